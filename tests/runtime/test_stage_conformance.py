"""Every stage the package has keeps the house rules: ``check_stage`` runs each one alone between
list doubles, on inputs captured from a tiny run of a real graph (built by
``sleapflow.graphs.build``, the same way a run builds it)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import msgspec
import numpy as np
import pytest

import sleapflow
from sleapflow.graphs.build import build_graph, prepare
from sleapflow.messages import Frame, FramePrediction
from sleapflow.options.boundary import build_config
from sleapflow.runtime import GraphSpec, KeyedStage, MapStage, chain, run_graph
from sleapflow.runtime.chaining import ChainedMaps
from sleapflow.runtime.latency import LatencyMeter
from sleapflow.session import PushSource, ResultSink
from sleapflow.stages.live import LiveSource, ResultTap
from sleapflow.stages.raw import RawOptions
from sleapflow.testing import ListSource, check_stage, write_synthetic_video

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

VIDEO = "datasets/centered_pair_small.mp4"
CKPT = "model_ckpts/minimal_instance_"
RAW = RawOptions(return_confmaps=True)

#: Each graph a check reads its stage from: its options and whether it is the raw variant.
CASES: dict[str, tuple[dict[str, Any], bool]] = {
    "topdown_tracked": (dict(data_path=VIDEO, model_paths=("centroid", "centered_instance"),
                             frames="0-3", tracking=True, max_gap=5, link_tracklets=True,
                             tracking_clean_instance_count=2), False),
    # One frame: the crop step alone (as checked here) would wait forever on a frame between
    # key frames, whose poses only the stages after it make (tests/graphs/test_centroid_every).
    "topdown_follow": (dict(data_path=VIDEO, model_paths=("centroid", "centered_instance"),
                            frames="0", centroid_every=2), False),
    "topdown_raw": (dict(data_path=VIDEO, model_paths=("centroid", "centered_instance"),
                         frames="0-1"), True),
    "bottomup": (dict(data_path=VIDEO, model_paths=("bottomup",), frames="0-1"), False),
    "bottomup_raw": (dict(data_path=VIDEO, model_paths=("bottomup",), frames="0-1"), True),
    "multiclass_bottomup": (dict(data_path=VIDEO, model_paths=("multiclass_bottomup",),
                                 frames="0-1"), False),
    "multiclass_bottomup_raw": (dict(data_path=VIDEO, model_paths=("multiclass_bottomup",),
                                     frames="0-1"), True),
    "single_instance": (dict(data_path="datasets/small_robot.mp4", model_paths=("single_instance",),
                             frames="0-1"), False),
    "single_instance_raw": (dict(data_path="datasets/small_robot.mp4",
                                 model_paths=("single_instance",), frames="0-1"), True),
    "centroid": (dict(data_path=VIDEO, model_paths=("centroid",), frames="0-1"), False),
    "centered_instance": (dict(data_path="datasets/minimal_instance.pkg.slp",
                               model_paths=("centered_instance",)), False),
    "track_only": (dict(data_path="datasets/minimal_instance.pkg.slp", tracking=True), False),
    "many_tracked": (dict(inputs=("clip0.mp4", "clip1.mp4"), model_paths=("single_instance",),
                          tracking=True, output_path="out/"), False),
}

#: (graph, stage): each kind of stage once, from the first graph that has it.
CHECKS = [
    ("topdown_tracked", "decode"), ("topdown_tracked", "batch"),
    ("topdown_tracked", "preprocess"), ("topdown_tracked", "centroid_forward"),
    ("topdown_tracked", "centroid_forward_reorder"), ("topdown_tracked", "crop"),
    ("topdown_tracked", "crop_preprocess"), ("topdown_tracked", "instance_peaks"),
    ("topdown_tracked", "filter"), ("topdown_tracked", "track"),
    ("topdown_tracked", "track_cleanup"), ("topdown_tracked", "link_gaps"),
    ("topdown_tracked", "link_tracklets(whole video)"),
    ("topdown_tracked", "write"),
    ("topdown_follow", "key_frames"), ("topdown_follow", "crop"),
    ("topdown_follow", "remember_poses"),
    ("topdown_raw", "raw"), ("topdown_raw", "collect"),
    ("bottomup", "paf_peaks"), ("bottomup", "group"), ("bottomup_raw", "raw"),
    ("multiclass_bottomup", "classify"), ("multiclass_bottomup_raw", "raw"),
    ("single_instance", "peaks"), ("single_instance_raw", "raw"),
    ("centroid", "centroids"),
    ("centered_instance", "gt_crop"),
    ("track_only", "labels"), ("track_only", "track"),
    ("many_tracked", "track"), ("many_tracked", "write"),
]

#: Stages that never look inside an item, so no item is bad for them.
PASS_THROUGH = {("topdown_raw", "collect")}


def kind(stage: Any) -> str:
    """What a stage is: its class, or for a map node the class of its callable."""
    return type(stage.fn).__name__ if isinstance(stage, MapStage) else type(stage).__name__


class Graphs:
    """Builds each case's graph (afresh on every call) and captures what each stage receives."""

    def __init__(self, root: Path, assets: Path) -> None:
        self.root = root
        self.assets = assets
        self.inputs: dict[str, dict[str, list[Any]]] = {}
        self.specs: dict[str, GraphSpec] = {}

    def spec(self, case: str) -> GraphSpec:
        """The case's graph, built once (for looking at, not running)."""
        if case not in self.specs:
            self.specs[case] = self.build(case)
        return self.specs[case]

    def build(self, case: str) -> GraphSpec:
        options, raw = CASES[case]
        options = dict(options)
        if "data_path" in options:
            options["data_path"] = str(self.assets / options["data_path"])
        if "inputs" in options:
            for k, name in enumerate(options["inputs"]):
                if not (self.root / name).exists():
                    write_synthetic_video(self.root / name, n_frames=3 + k, height=64, width=96)
            options["inputs"] = tuple(str(self.root / name) for name in options["inputs"])
            options["output_path"] = f"{self.root / options['output_path']}/"
        options["model_paths"] = tuple(str(self.assets / f"{CKPT}{m}")
                                       for m in options.get("model_paths", ()))
        run = prepare(build_config(device="cpu", batch_size=2, **options))
        return build_graph(run, raw=RAW if raw else None, output_path=None)

    async def inputs_of(self, case: str) -> dict[str, list[Any]]:
        """Every stage's inputs, from one run of the case's graph with a tap before each stage."""
        if case not in self.inputs:
            spec = self.build(case)
            seen: dict[str, list[Any]] = {s.name: [] for s in spec.stages}

            def tap(name: str) -> MapStage:
                def keep(item: Any) -> Any:
                    seen[name].append(item)
                    return item
                return MapStage(f"tap:{name}", keep, offload=False)

            stages: list[Any] = [spec.stages[0]]
            sizes: list[int] = []
            for edge, stage in zip(spec.edges, spec.stages[1:]):
                stages += [tap(stage.name), stage]
                sizes += [edge.maxsize, edge.maxsize]
            await run_graph(chain(f"capture_{case}", stages, sizes))
            self.inputs[case] = seen
        return self.inputs[case]


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory, assets: Path) -> Graphs:
    return Graphs(tmp_path_factory.mktemp("conformance"), assets)


@pytest.mark.parametrize(("case", "name"), CHECKS, ids=[f"{c}.{n}" for c, n in CHECKS])
async def test_every_graph_stage_keeps_the_house_rules(graphs: Graphs, case: str, name: str) -> None:
    items = (await graphs.inputs_of(case))[name]
    stage = graphs.build(case).stage(name)
    if stage.role != "source":
        assert items, f"the capture run gave {name} nothing to check it with"
    emitted = await check_stage(stage, items, rebuild=lambda: graphs.build(case).stage(name),
                                bad_item=None if (case, name) in PASS_THROUGH else object())
    if stage.role != "sink":
        assert emitted or name == "filter", f"{name} emitted nothing"


def test_the_checks_cover_every_kind_of_stage_the_graphs_build(graphs: Graphs) -> None:
    built = {kind(s) for case in CASES for s in graphs.spec(case).stages}
    checked = {kind(graphs.spec(case).stage(name)) for case, name in CHECKS}
    assert built == checked


def _stage_classes() -> set[type]:
    """Every public class of the package that is a graph node by itself (declares a role)."""
    found = set()
    for info in pkgutil.walk_packages(sleapflow.__path__, "sleapflow."):
        if info.name.endswith("__main__") or ".demo" in info.name:
            continue
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == info.name and not cls.__name__.startswith("_") \
                    and isinstance(getattr(cls, "role", None), str):
                found.add(cls)
    return found


def _frames(n: int) -> list[Frame]:
    return [Frame(seq=i, video_id=0, frame_idx=i, image=np.zeros((8, 8, 1), np.uint8))
            for i in range(n)]


#: Streams the directly made stages hand results to, closed when the module's tests end.
_STREAMS: list[Any] = []


@pytest.fixture(scope="module", autouse=True)
def _close_streams() -> Any:
    yield
    for stream in _STREAMS:
        stream.close()
    _LIVE_DIR.cleanup()


def _push_source() -> PushSource:
    send, receive = anyio.create_memory_object_stream[Any](3)
    for frame in _frames(3):
        send.send_nowait((frame.image, frame.frame_idx, 0, None))
    send.close()
    _STREAMS.append(receive)
    return PushSource(receive)


def _result_sink() -> ResultSink:
    send, receive = anyio.create_memory_object_stream[Any](10)
    _STREAMS.extend([send, receive])
    return ResultSink(send)


#: A tiny clip the live source reads as a stream (made once, removed with the module's streams).
_LIVE_DIR = tempfile.TemporaryDirectory(prefix="sleapflow-live-check-")


def _live_source() -> LiveSource:
    clip = Path(_LIVE_DIR.name) / "clip.mp4"
    if not clip.exists():
        write_synthetic_video(clip, n_frames=6, height=32, width=32)
    # --no-live: every frame kept, so each run emits the same frames.
    return LiveSource(str(clip), live=False, capacity=2, meter=LatencyMeter())


def _result_tap() -> ResultTap:
    return ResultTap(LatencyMeter())


def _predictions(n: int) -> list[FramePrediction]:
    return [FramePrediction(seq=i, video_id=0, frame_idx=i, points=np.zeros((1, 2, 2)),
                            point_scores=np.ones((1, 2)), instance_scores=np.ones(1),
                            capture_time=100.0 + i) for i in range(n)]


def _keyed() -> KeyedStage[list]:
    def hold(held: list, frame: Frame) -> list:
        held.append(frame)
        return [] if len(held) < 2 else [held.pop(0)]
    return KeyedStage("keyed", list, hold, flush=list, flatten=True)


def _chained() -> ChainedMaps:
    """Two map nodes as one (latency mode folds a live graph's runs of map nodes)."""
    def tag(frame: Frame) -> Frame:
        return msgspec.structs.replace(frame, frame_idx=frame.frame_idx + 10)
    return ChainedMaps([MapStage("tag", tag), MapStage("again", tag)])


#: Stages no graph case builds, made directly: (factory, sample items, a bad item or None).
OTHERS: dict[str, tuple[Callable[[], Any], Callable[[], list[Any]], Any]] = {
    "PushSource": (_push_source, list, None),
    "ResultSink": (_result_sink, lambda: _frames(3), None),
    "ChainedMaps": (_chained, lambda: _frames(3), object()),
    "KeyedStage": (_keyed, lambda: [*_frames(3), Frame(seq=3, video_id=1, frame_idx=0, image=None)],
                   object()),
    "ListSource": (lambda: ListSource(_frames(3)), list, None),
    "LiveSource": (_live_source, list, None),
    "ResultTap": (_result_tap, lambda: _predictions(3), object()),
}


@pytest.mark.parametrize("name", sorted(OTHERS))
async def test_other_stages_keep_the_house_rules(name: str) -> None:
    make, samples, bad = OTHERS[name]
    stage = make()
    emitted = await check_stage(stage, samples(), rebuild=make, bad_item=bad)
    assert emitted or stage.role == "sink"


def test_every_stage_class_is_checked(graphs: Graphs) -> None:
    checked = set(OTHERS)
    for case, name in CHECKS:
        stage = graphs.spec(case).stage(name)
        checked |= {kind(stage), type(stage).__name__}
    assert {cls.__name__ for cls in _stage_classes()} - checked == set()
