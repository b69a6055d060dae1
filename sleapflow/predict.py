"""``run_inference(...)``: the sleap-nn compatible Python entry point.

Same keywords, defaults and return shapes as ``sleap_nn.legacy_predict.run_inference`` (0.3.5):
``make_labels=True`` returns an ``sio.Labels`` and writes it (to ``output_path``, or beside the
input as ``<input>.predictions.slp``, as the reference does); ``make_labels=False`` returns the
reference's list of per-batch dicts of numpy arrays and writes nothing.

Both are the job ``sleapflow track`` runs (:func:`sleapflow.jobs.job.plan_job` /
:func:`~sleapflow.jobs.job.run_job`), not journaled: ``make_labels=True`` writes and returns the
labels; ``make_labels=False`` runs the graph's raw-array variant (its declaration builds it, see
:func:`sleapflow.graphs.build.build_graph`): the post-forward stages end in a *raw-dict stage*
that packs each batch the way the reference's ``make_labels=False`` does. A graph without one
refuses ``make_labels=False`` clearly.

``run_inference`` is synchronous (it calls ``anyio.run``); from async code use
:func:`arun_inference` or :func:`sleapflow.session.open_graph`.

:class:`Predictor` is the one-frame API for a rig that owns its camera loop: the graph
``open_graph`` opens, held open in a background event-loop thread and fed one frame per
:meth:`Predictor.predict` call (see docs/PREDICTOR.md).
"""

from __future__ import annotations

import inspect
import queue
import threading
import weakref
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Any

import anyio
import anyio.lowlevel
import numpy as np
import sleap_io as sio
from anyio.from_thread import BlockingPortal

from sleapflow.errors import ConfigError, EventLoopError, SleapflowError
from sleapflow.graphs.build import RawOptions
from sleapflow.jobs.job import Job, plan_job, run_job
from sleapflow.options.boundary import build_config
from sleapflow.options.config import InferenceConfig
from sleapflow.options.declared import front_options, keyword_signature

__all__ = ("Poses", "Predictor", "RawOptions", "arun_inference", "build_config", "poses_of", "run_inference")


# --------------------------------------------------------------------------------------------
# The entry points
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Call:
    """One resolved call: the config, the raw-array options and what to do with the result."""

    cfg: InferenceConfig
    raw: RawOptions
    make_labels: bool
    input_labels: sio.Labels | None
    input_video: sio.Video | None


def _plan(call: _Call) -> Job:
    """The job of one call, planned and its output checked (as every front end's output is)
    before any weights load. The reference always saves: to ``output_path``, beside the input,
    or ./results.predictions.slp."""
    for name, obj, kind in (("input_labels", call.input_labels, sio.Labels),
                            ("input_video", call.input_video, sio.Video)):
        if obj is not None and not isinstance(obj, kind):
            raise ConfigError(f"{name} must be a sleap_io.{kind.__name__} (got {type(obj).__name__})")
    return plan_job(call.cfg, output=call.cfg.output_path if call.make_labels else None,
                    name_output=call.make_labels, raw=None if call.make_labels else call.raw,
                    input_labels=call.input_labels, input_video=call.input_video)


async def _execute(call: _Call) -> sio.Labels | list[dict[str, np.ndarray]]:
    # Planning reads configs, opens the video, may load a .slp and checks the output on the
    # file system: off the event loop.
    job = await anyio.to_thread.run_sync(_plan, call)
    result = await run_job(job)
    if result.raw is not None:
        return result.raw
    assert result.labels is not None
    return result.labels


def _in_event_loop() -> bool:
    try:
        anyio.lowlevel.current_token()
    except RuntimeError:  # anyio's NoEventLoopError: no loop runs in this thread
        return False
    return True


def run_inference(*args: Any, **kwargs: Any) -> sio.Labels | list[dict[str, np.ndarray]]:
    """Run pose inference; sleap-nn's ``run_inference`` keywords, defaults and return values.

    Returns an ``sio.Labels`` (also written to ``output_path``, default
    ``<data_path without suffix>.predictions.slp``) when ``make_labels`` is true; otherwise a list
    with one dict of numpy arrays per batch (the reference's keys and dtypes) and nothing is
    written. Inputs: ``input_labels`` wins over ``input_video``, which wins over
    ``data_path``. ``gui`` is accepted and ignored (sleapflow prints no progress here).
    ``runtime`` (auto, torch, onnx, tensorrt) and ``precision`` are sleapflow's own. Lists are
    taken where the signature says tuple, ``frames`` may also be text (``"0-100,200"``),
    ``peak_threshold`` a ``[centroid, instance]`` pair and ``kf_node_indices`` text (``"0,1"``).

    The signature (``inspect.signature(run_inference)``) is derived from the options' one
    declaration (:mod:`sleapflow.options.declared`); an unknown keyword is a
    :class:`ConfigError`.

    Raises :class:`EventLoopError` when called from a running event loop: use
    ``await arun_inference(...)`` or :func:`sleapflow.session.open_graph` there.
    """
    call = _resolve_call(_arguments("run_inference", args, kwargs))
    if _in_event_loop():
        raise EventLoopError(
            "run_inference() cannot run inside a running event loop (it starts its own); from "
            "async code use `await sleapflow.predict.arun_inference(...)` with the same arguments, "
            "or stream frames with `async with sleapflow.session.open_graph(...)`"
        )
    return anyio.run(partial(_execute, call))


async def arun_inference(**kwargs: Any) -> sio.Labels | list[dict[str, np.ndarray]]:
    """:func:`run_inference` for async callers (same keywords); runs in the caller's event loop."""
    return await _execute(_resolve_call(_arguments("arun_inference", (), kwargs)))


def _own(name: str, default: Any, annotation: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default,
                             annotation=annotation)


_RAW_KEYS = ("return_confmaps", "return_pafs", "return_paf_graph", "return_class_maps",
             "return_class_vectors")

#: run_inference's own keywords (the input and what to do with the result; not options of the
#: graph), each placed after the option sleap-nn lists it after, so that the signature keeps
#: sleap-nn's order: positional calls bind as they do there.
_OWN: dict[str | None, list[inspect.Parameter]] = {
    None: [_own("data_path", None, str | None), _own("input_labels", None, sio.Labels | None),
           _own("input_video", None, sio.Video | None)],
    "integral_patch_size": [_own(k, False, bool) for k in _RAW_KEYS[:3]],
    "min_line_scores": [*(_own(k, False, bool) for k in _RAW_KEYS[3:]),
                        _own("make_labels", True, bool)],
    "tracking_clean_iou_threshold": [_own("gui", False, bool)],
}

_SIGNATURE = keyword_signature("run_inference", own=_OWN,
                               return_annotation=sio.Labels | list[dict[str, np.ndarray]])
run_inference.__signature__ = _SIGNATURE  # type: ignore[attr-defined]

#: The keywords that become the config: the declared options and the input path.
_CONFIG_KEYS = ("data_path", *(o.keyword for o in front_options("run_inference")))


def _arguments(caller: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Every keyword of the signature, bound to what was given or to its default."""
    unknown = sorted(set(kwargs) - set(_SIGNATURE.parameters))
    if unknown:
        raise ConfigError(f"{caller}: unknown argument(s) {', '.join(unknown)}")
    try:
        bound = _SIGNATURE.bind(*args, **kwargs)
    except TypeError as exc:  # too many positional arguments, or one given twice
        raise ConfigError(f"{caller}: {exc}") from None
    bound.apply_defaults()
    return dict(bound.arguments)


def _resolve_call(args: dict[str, Any]) -> _Call:
    """Validate the keywords (the reference's checks, in its order) and build the config."""
    make_labels = bool(args["make_labels"])
    tracking = bool(args["tracking"])
    if not args["model_paths"] and not tracking:
        raise ConfigError(
            "Neither tracker nor path to trained models specified. Use `model_paths` to specify "
            "models to use. To retrack on predictions, set `tracking` to True."
        )
    if not make_labels and args["no_empty_frames"]:
        raise ConfigError("no_empty_frames needs make_labels=True (it removes empty frames from "
                          "the output Labels)")
    if not make_labels and tracking:
        raise ConfigError("tracking needs make_labels=True (it links instances in the output "
                          "Labels)")
    if args["data_path"] is None and args["input_labels"] is None and args["input_video"] is None:
        raise ConfigError("pass data_path (a video, .slp, HDF5 or image folder), input_labels or "
                          "input_video")
    cfg = build_config(**{k: args[k] for k in _CONFIG_KEYS})
    return _Call(cfg=cfg, raw=RawOptions(**{k: bool(args[k]) for k in _RAW_KEYS}),
                 make_labels=make_labels, input_labels=args["input_labels"], input_video=args["input_video"])


# --------------------------------------------------------------------------------------------
# The one-frame API
# --------------------------------------------------------------------------------------------


@contextmanager
def _loop_thread() -> Iterator[BlockingPortal]:
    """An event loop in a daemon thread, driven through a blocking portal: unlike anyio's
    ``start_blocking_portal`` (a pool thread), it never keeps the interpreter from exiting."""
    handed: queue.Queue[BlockingPortal | BaseException] = queue.Queue()

    async def serve() -> None:
        async with BlockingPortal() as portal:
            handed.put(portal)
            await portal.sleep_until_stopped()

    def run() -> None:
        try:
            anyio.run(serve)
        except BaseException as exc:
            handed.put(exc)

    thread = threading.Thread(target=run, name="sleapflow Predictor", daemon=True)
    thread.start()
    got = handed.get()
    if isinstance(got, BaseException):
        raise got
    try:
        yield got
    finally:
        got.call(got.stop)
        thread.join()


@dataclass(frozen=True)
class Poses:
    """One frame's animals, in frame pixels: ``points`` (n, nodes, 2) float64 with NaN for a
    node not found, ``point_scores`` (n, nodes), ``instance_scores`` (n,). With tracking,
    ``track_ids`` (n,) int64 (the N of ``track_N``; -1: no track, e.g. a motion tracker's
    unconfirmed detection) and ``tracking_scores`` (n,); without, both are None.
    ``track_names`` are the names ``track`` writes (``track_N``, or an identity model's class
    names, which come without ``tracking``), None when there are none. Animals with no node
    found are left out, as ``track`` leaves them out of its .slp."""

    frame_idx: int
    points: np.ndarray
    point_scores: np.ndarray
    instance_scores: np.ndarray
    track_ids: np.ndarray | None = None
    tracking_scores: np.ndarray | None = None
    track_names: tuple[str | None, ...] | None = None

    @property
    def n_instances(self) -> int:
        return int(self.points.shape[0])


def _track_id(name: str | None) -> int:
    if name is None:
        return -1
    prefix, _, number = name.rpartition("_")
    # Identity models name tracks by class ("female"): those have no number.
    return int(number) if prefix == "track" and number.isdigit() else -1


def poses_of(pred: Any, *, tracked: bool) -> Poses:
    """A graph's ``FramePrediction`` as :class:`Poses` (empty slots dropped)."""
    points = np.asarray(pred.points, dtype=np.float64)
    keep = (~np.all(np.isnan(points), axis=(1, 2)) if points.size
            else np.zeros(points.shape[0], dtype=bool))
    track_ids = tracking_scores = None
    if tracked:
        names = pred.track_names or (None,) * points.shape[0]
        track_ids = np.array([_track_id(n) for n in names], dtype=np.int64)[keep]
        scores = (np.full(points.shape[0], np.nan) if pred.tracking_scores is None
                  else np.asarray(pred.tracking_scores, dtype=np.float64))
        tracking_scores = scores[keep]
    names = (None if pred.track_names is None
             else tuple(n for n, k in zip(pred.track_names, keep.tolist()) if k))
    return Poses(frame_idx=int(pred.frame_idx), points=points[keep],
                 point_scores=np.asarray(pred.point_scores, dtype=np.float64)[keep],
                 instance_scores=np.asarray(pred.instance_scores, dtype=np.float64)[keep],
                 track_ids=track_ids, tracking_scores=tracking_scores, track_names=names)


class Predictor:
    """Synchronous one-frame inference: ``Predictor(models, **options).predict(frame)``.

    The models load in ``__init__`` (a bad model or option fails there); the first
    :meth:`predict` call is the warm-up (first-run allocations, runtime initialisation), later
    ones run at the steady speed. Frames go through the very graph ``track`` and
    :func:`~sleapflow.session.open_graph` run, held open in a background event-loop thread,
    one frame at a time (``batch_size=1``, no batching wait). ``options`` are
    ``open_graph``'s: ``device``, ``runtime``, ``precision``, ``peak_threshold``,
    ``max_instances``, ``tracking`` and the tracker's options, ``centroid_every``, ...; with
    ``tracking=True`` the tracker's state carries from one call to the next (the frames of one
    camera, in order). Gap and identity linking (``max_gap``, ``fill_gaps``,
    ``link_tracklets``) look ahead, so they are refused.

    Not for use inside a running event loop (``predict`` blocks); there use ``open_graph``.
    Close it with :meth:`close` or use it as a context manager.
    """

    def __init__(self, model_paths: list[str] | tuple[str, ...] | str, **options: Any) -> None:
        from sleapflow.session import NamedGraphSession, open_graph

        if _in_event_loop():
            raise EventLoopError("Predictor blocks on every frame, so it cannot run inside an event "
                                 "loop; from async code use `async with sleapflow.open_graph(...)`")
        if "source" in options:
            raise ConfigError("Predictor: frames are passed to predict(); there is no source=")
        from sleapflow.options.mot import parse_mot_param

        mot = options.get("mot_param") or ()
        linking = any(k == "link_tracklets" and v for k, v in
                      map(parse_mot_param, (mot,) if isinstance(mot, str) else mot))
        for name in ("max_gap", "fill_gaps", "link_tracklets"):
            if options.get(name) or (name == "link_tracklets" and linking):
                raise ConfigError(f"Predictor: {name} re-links tracks by looking ahead at later "
                                  "frames, so it cannot answer each frame as it comes; leave it off")
        options.setdefault("batch_size", 1)
        options.setdefault("max_batch_delay_ms", 0.0)
        # One frame in flight: a second forward worker would only idle (as in a live graph's
        # latency mode), and with one the map stages run as one (see below).
        options.setdefault("forward_workers", 1)
        self._tracked = bool(options.get("tracking", False))
        self._closed = False
        self._lock = threading.Lock()
        # Checked here, in the caller's thread: a bad option fails before any thread starts.
        session = open_graph(model_paths, **options)
        assert isinstance(session, NamedGraphSession)
        session.one_at_a_time = True  # one frame in flight: see predict()
        self._stack = ExitStack()
        try:
            self._portal = self._stack.enter_context(_loop_thread())
            self._session = self._stack.enter_context(
                self._portal.wrap_async_context_manager(session))
        except BaseException:
            self._stack.close()
            raise
        # A Predictor dropped without close() still stops its graph (at collection, or at exit).
        self._finalizer = weakref.finalize(self, self._stack.close)
        self._frame_idx = 0

    @property
    def node_names(self) -> tuple[str, ...]:
        """The skeleton's node names, in the order of ``Poses.points``' second axis."""
        return self._session.node_names or ()

    @property
    def graph_name(self) -> str:
        return self._session.name

    def statistics(self) -> Any:
        """The graph's per-stage counters so far (:class:`~sleapflow.runtime.GraphStats`)."""
        return self._session.statistics()

    def latency(self) -> Any:
        """Capture-to-pose latency of the frames passed with ``capture_time`` (percentiles in
        ms, the session's :class:`~sleapflow.runtime.latency.LatencyFigures`), None if none."""
        return self._session.latency()

    async def _one(self, image: Any, frame_idx: int, capture_time: float | None) -> Any:
        await self._session.push(image, frame_idx=frame_idx, capture_time=capture_time)
        return await self._session.__anext__()

    def predict(self, frame: Any, *, frame_idx: int | None = None,
                capture_time: float | None = None) -> Poses:
        """The poses in one (H, W[, C]) uint8 frame; ``frame_idx`` defaults to a count from 0.

        ``capture_time`` (``time.time()`` seconds, e.g. the camera's timestamp) times the frame
        from capture to pose: :meth:`latency` then reports it. Frames may change size between
        calls; the caller's buffer is copied before the call returns, so it may be reused at once.
        """
        with self._lock:  # one frame in flight: results pair with calls in order
            return self._predict(frame, frame_idx, capture_time)

    def _predict(self, frame: Any, frame_idx: int | None, capture_time: float | None) -> Poses:
        if self._closed:
            raise SleapflowError("predict(): this Predictor is closed")
        idx = self._frame_idx if frame_idx is None else int(frame_idx)
        self._frame_idx = idx + 1
        try:
            pred = self._portal.call(self._one, frame, idx, capture_time)
        except StopAsyncIteration:
            self._fail()
            raise SleapflowError("predict(): the graph has stopped") from None
        except (ConfigError, EventLoopError):
            raise  # a bad frame: the graph is unharmed
        except SleapflowError:
            self._fail()  # raises the graph's own error (a StageError) when it has one
            raise
        return poses_of(pred, tracked=self._tracked)

    def _fail(self) -> None:
        self._closed = True
        self._finalizer()

    def close(self) -> None:
        """Stop the graph and its thread (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._portal.call(self._session.close_input)
            finally:
                self._finalizer()

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
