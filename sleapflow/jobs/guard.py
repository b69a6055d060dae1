"""The checks around a run's outputs, for every front end that writes: fail before inference,
hold the lock, say on Ctrl-C what was kept."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from sleapflow.errors import ConfigError
from sleapflow.logs import get_logger
from sleapflow.outputs.files import OutputLock, check_output_folder, check_output_target, clean_stale_temps
from sleapflow.outputs.journal import journal_path

__all__ = (
    "OutputGuard", "check_outputs_apart", "guarded_outputs", "interrupted_message", "output_guards",
)


log = get_logger(__name__)

#: What the last guarded run would tell a user who pressed Ctrl-C (the CLI prints it).
_STATE: dict[str, Any] = {"output": None, "journal": None, "outputs": ()}


def interrupted_message(what: str = "Interrupted") -> str:
    """One line: what an interrupted (or preempted: ``what``) run kept and how to go on."""
    out = _STATE["output"]
    journal = _STATE["journal"]
    if journal is not None and Path(journal).exists():
        return (f"{what}: the frames done so far are kept in {str(journal)!r}; run the same "
                "command with --resume to continue.")
    if out is not None:
        return f"{what}: {str(out)!r} was not written (an existing file is unchanged)."
    kept = [p for p in map(journal_path, _STATE["outputs"]) if p.exists()]
    if kept:
        return (f"{what}: the videos finished are written; the frames done of {len(kept)} "
                f"other(s) are kept in their journals (e.g. {str(kept[0])!r}); run the same "
                "command with --resume to continue (finished videos are skipped).")
    return what + "."


class OutputGuard:
    """Everything checked about the output before inference, and its lock during the run.

    Zero selected frames is an error (exit 2, nothing written): an empty result never
    replaces an existing output.
    """

    def __init__(self, output_path: str, *, n_frames: int) -> None:
        if n_frames == 0:
            raise ConfigError("no frames selected (every requested frame is past the end of the "
                              "input, or the filters left none): nothing was written and an "
                              "existing output is unchanged; check --frames")
        check_output_target(output_path)
        removed = clean_stale_temps(output_path)
        if removed:
            log.info("removed temporary files left by an earlier run that died",
                     files=[p.name for p in removed])
        check_output_folder(output_path, n_frames=n_frames)
        self.output_path = output_path
        self.lock = OutputLock(output_path)
        self.lock.check_free()
        _STATE.update(output=output_path, journal=None, outputs=())

    def set_journal(self, path: str | Path | None) -> None:
        _STATE["journal"] = path

    def __enter__(self) -> OutputGuard:
        self.lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


def check_outputs_apart(outputs: Sequence[tuple[str, str | Path]], *,
                        inputs: Sequence[str | Path], models: Sequence[str | Path]) -> None:
    """Every path a run will write (``(option, path)`` each: the ``.slp``, each other format, the
    render), checked together before anything is written or any weights load: none may be a
    device, FIFO, socket or folder, one of the run's inputs, or a model file or a file inside a
    model folder (``-o model/best.ckpt`` would replace the trained model)."""
    def real(p: str | Path) -> Path:
        return Path(os.path.realpath(p))

    input_files = {real(p) for p in inputs if p and Path(p).exists()}
    model_roots = [real(p) for p in models if p and Path(p).exists()]
    for what, path in outputs:
        check_output_target(path, what)
        target = real(path)
        if target in input_files:
            raise ConfigError(f"{what} {str(path)!r} is the input file (or a video it refers "
                              "to); inputs are never overwritten: choose another output name")
        for root in model_roots:
            if target == root or (root.is_dir() and target.is_relative_to(root)):
                raise ConfigError(f"{what} {str(path)!r} is inside the model {str(root)!r}: "
                                  "writing it would replace the model's files; choose an output "
                                  "outside the model folder")


def output_guards(outputs: Sequence[tuple[str, int]]) -> list[OutputGuard]:
    """The guards of a run that writes several outputs (``(path, frames)`` each), all checked
    now: a device node, an unwritable folder or no room fails the run before any weights
    load."""
    # A video with no selected frame is not an error of the whole run: its writer fails it
    # alone at the end (an existing output of it is left unchanged), so it is checked as one.
    return [OutputGuard(path, n_frames=max(1, n_frames)) for path, n_frames in outputs]


@contextlib.contextmanager
def guarded_outputs(guards: Sequence[OutputGuard]) -> Iterator[Sequence[OutputGuard]]:
    """Each of several outputs locked for the run; each is still written atomically when its
    video ends."""
    # On Ctrl-C the summary cannot name one output: each was written, or not, as its video ended.
    _STATE.update(output=None, journal=None, outputs=tuple(g.output_path for g in guards))
    with contextlib.ExitStack() as stack:
        for guard in guards:
            stack.enter_context(guard)
        yield guards
