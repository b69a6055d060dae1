"""Frame selections held as inclusive ranges, never as a list of every index."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, overload

from sleapflow.errors import ConfigError

__all__ = (
    "MAX_FRAME_INDEX", "Selection", "SpanSequence", "as_spans", "first_outside", "iter_spans", "parse_frames",
    "span_count", "unique_spans",
)


#: A selection: single indices and inclusive ``(start, end)`` ranges, in the order given.
Selection = tuple["int | tuple[int, int]", ...]

#: The largest frame index accepted: far beyond any real video, well inside int64, so ranges
#: parsed from the command line can never overflow NumPy, torch or HDF5 integers.
MAX_FRAME_INDEX = 2**53

_RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")
_SINGLE = re.compile(r"^\s*(\d+)\s*$")


def _bounded(value: str, text: str) -> int:
    # Digits only: compare by length first so a 10,000-digit number is not converted at all.
    if len(value.lstrip("0")) > 17 or int(value) > MAX_FRAME_INDEX:
        raise ConfigError(f"--frames: {value[:24]}{'...' if len(value) > 24 else ''} in {text[:60]!r} "
                          f"is too large (frame indices are at most {MAX_FRAME_INDEX})")
    return int(value)


def parse_frames(text: str | None) -> Selection | None:
    """Parse ``"0-100,200-300"`` / ``"1,5,9"`` / ``"3-7,12"`` into indices and inclusive ranges.

    An empty string means every frame. Order is kept; planning drops repeats (a frame is
    predicted once) and frames the video does not have. Memory is one entry per comma-separated
    part, whatever the ranges span.
    """
    if text is None or not text.strip():
        return None
    out: list[int | tuple[int, int]] = []
    for part in text.split(","):
        if not part.strip():
            continue
        if match := _RANGE.match(part):
            start, end = _bounded(match[1], text), _bounded(match[2], text)
            if end < start:
                raise ConfigError(f"--frames: range {part.strip()!r} ends before it starts")
            out.append((start, end) if end > start else start)
        elif match := _SINGLE.match(part):
            out.append(_bounded(match[1], text))
        else:
            raise ConfigError(
                f"--frames: cannot parse {part.strip()!r} in {text!r}; use comma-separated frame "
                "indices and inclusive ranges, e.g. '0-100,200-300' or '1,5,9'"
            )
    if not out:
        raise ConfigError(f"--frames: {text!r} selects no frames")
    return tuple(out)


def as_spans(frames: Iterable[Any]) -> list[tuple[int, int]]:
    """Half-open ``[start, stop)`` spans of a selection (ints, inclusive pairs or a range)."""
    if isinstance(frames, range) and frames.step == 1:
        return [(frames.start, frames.stop)] if frames.stop > frames.start else []
    spans: list[tuple[int, int]] = []
    for entry in frames:
        if isinstance(entry, (tuple, list)):
            start, end = int(entry[0]), int(entry[1])
            if end >= start:
                spans.append((start, end + 1))
        else:
            value = int(entry)
            # Consecutive single indices (a Python caller's list) collapse into one span.
            if spans and spans[-1][1] == value:
                spans[-1] = (spans[-1][0], value + 1)
            else:
                spans.append((value, value + 1))
    return spans


def unique_spans(frames: Iterable[Any], limit: int | None = None
                 ) -> tuple[list[tuple[int, int]], int, int]:
    """The selection without repeats, in the order given, clipped to ``[0, limit)``.

    Returns the spans, how many repeated indices were dropped, and how many indices fell
    outside ``[0, limit)``. Work is quadratic in the number of parts, not in their lengths.
    """
    covered: list[tuple[int, int]] = []
    out: list[tuple[int, int]] = []
    repeats = outside = 0
    for start, stop in as_spans(frames):
        pieces = [(start, stop)]
        for c_start, c_stop in covered:
            nxt = []
            for p_start, p_stop in pieces:
                if p_stop <= c_start or p_start >= c_stop:
                    nxt.append((p_start, p_stop))
                    continue
                repeats += min(p_stop, c_stop) - max(p_start, c_start)
                if p_start < c_start:
                    nxt.append((p_start, c_start))
                if p_stop > c_stop:
                    nxt.append((c_stop, p_stop))
            pieces = nxt
        covered.extend(pieces)
        for p_start, p_stop in pieces:
            lo, hi = max(p_start, 0), p_stop if limit is None else min(p_stop, limit)
            outside += (p_stop - p_start) - max(0, hi - lo)
            if hi > lo:
                if out and out[-1][1] == lo:
                    out[-1] = (out[-1][0], hi)
                else:
                    out.append((lo, hi))
    return out, repeats, outside


def first_outside(frames: Iterable[Any], limit: int, n: int = 5) -> list[int]:
    """Up to ``n`` selected indices at or past ``limit`` (for a warning), without expanding."""
    found: list[int] = []
    for start, stop in as_spans(frames):
        lo = max(start, limit)
        found.extend(range(lo, min(stop, lo + n - len(found))))
        if len(found) >= n:
            break
    return found


def span_count(spans: Sequence[tuple[int, int]]) -> int:
    return sum(stop - start for start, stop in spans)


def iter_spans(spans: Iterable[tuple[int, int]]) -> Iterator[int]:
    for start, stop in spans:
        yield from range(start, stop)


class SpanSequence(Sequence[Any]):
    """A read-only sequence of ``make(index)`` for every index of some spans, built on demand.

    The decode source slices it a chunk at a time, so a ten-hour video's plan costs a few
    integers instead of a million work items.
    """

    def __init__(self, spans: Sequence[tuple[int, int]], make: Any) -> None:
        self.spans = [(int(a), int(b)) for a, b in spans if b > a]
        self.make = make
        self._starts: list[int] = []
        total = 0
        for start, stop in self.spans:
            self._starts.append(total)
            total += stop - start
        self._len = total

    def __len__(self) -> int:
        return self._len

    def index_at(self, pos: int) -> int:
        """The frame index at position ``pos``."""
        import bisect

        if pos < 0:
            pos += self._len
        if not 0 <= pos < self._len:
            raise IndexError(pos)
        k = bisect.bisect_right(self._starts, pos) - 1
        return self.spans[k][0] + pos - self._starts[k]

    @overload
    def __getitem__(self, pos: int) -> Any: ...

    @overload
    def __getitem__(self, pos: slice) -> SpanSequence: ...

    def __getitem__(self, pos: int | slice) -> Any:
        if isinstance(pos, slice):
            start, stop, step = pos.indices(self._len)
            if step != 1:
                raise ValueError("SpanSequence slices take no step")
            return SpanSequence(self._sub_spans(start, stop), self.make)
        return self.make(self.index_at(pos))

    def _sub_spans(self, start: int, stop: int) -> list[tuple[int, int]]:
        out = []
        for (a, b), offset in zip(self.spans, self._starts, strict=True):
            lo = max(start - offset, 0)
            hi = min(stop - offset, b - a)
            if hi > lo:
                out.append((a + lo, a + hi))
        return out

    def __iter__(self) -> Iterator[Any]:
        for index in iter_spans(self.spans):
            yield self.make(index)

    def __repr__(self) -> str:
        return f"SpanSequence({self.spans!r})"
