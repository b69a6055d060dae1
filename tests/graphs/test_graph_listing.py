"""`sleapflow graphs NAME` shows exactly the graph `track` runs: the stages `--stats` reports and
the spec's bounded edges, for every named graph and the options that change its shape."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sleapflow.cli.app import main
from sleapflow.graphs import GRAPHS
from sleapflow.graphs.build import build_graph, prepare
from sleapflow.options.boundary import build_config
from sleapflow.runtime import GraphRunner

from parity import CKPT, INFERENCE_CASES, PKG, VIDEO

#: Per graph: its input and model folders.
GRAPH_CASES = {**INFERENCE_CASES, "track_only": (PKG, [])}

#: Option sets that add or fan out stages, as CLI flags and as option keywords.
OPTION_SETS = {
    "defaults": ([], {}),
    "tracked": (["--tracking", "--tracking-clean-instance-count", "2", "--max-instances", "2",
                 "--filter-min-instance-score", "0.1", "--forward-workers", "1",
                 "--postprocess-workers", "2", "--batch-size", "2", "--queue-maxsize", "6"],
                {"tracking": True, "tracking_clean_instance_count": 2, "max_instances": 2,
                 "filter_min_instance_score": 0.1, "forward_workers": 1,
                 "postprocess_workers": 2, "batch_size": 2, "queue_maxsize": 6}),
}

_STAGE = re.compile(r"^  \[(source|stage |sink  )\] (\S+)")
_EDGE = re.compile(r"^  (\S+) -> (\S+)  \(maxsize (\d+)\)$")


def _listing(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[list[str], list[tuple]]:
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    stages = [m[2] for line in lines if (m := _STAGE.match(line))]
    edges = [(m[1], m[2], int(m[3])) for line in lines if (m := _EDGE.match(line))]
    return stages, edges


def _table_stages(table: str) -> list[str]:
    rows = table.splitlines()[2:-1]  # header, rule ... bottleneck line
    return [row.split()[0] for row in rows]


def test_every_named_graph_is_covered() -> None:
    assert set(GRAPH_CASES) == set(GRAPHS)


@pytest.mark.parametrize("options", sorted(OPTION_SETS))
@pytest.mark.parametrize("name", sorted(GRAPH_CASES))
def test_listing_matches_the_graph_that_runs(name: str, options: str, assets: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    data, models = GRAPH_CASES[name]
    flags, keywords = OPTION_SETS[options]
    if name == "track_only" and "--tracking" not in flags:
        flags, keywords = [*flags, "--tracking"], {**keywords, "tracking": True}
    paths = [str(assets / f"{CKPT}{m}") for m in models]
    # Without models the listing uses placeholder configs; with them, the models' own configs.
    shown_dry = _listing(capsys, ["graphs", name, *flags])
    shown = _listing(capsys, ["graphs", name, *flags,
                              *[arg for p in paths for arg in ("-m", p)]])
    assert shown == shown_dry
    cfg = build_config(data_path=str(assets / data), model_paths=paths, device="cpu",
                       graph=None if name == "track_only" else name, **keywords)
    spec = build_graph(prepare(cfg))
    stats_stages = _table_stages(GraphRunner(spec).statistics().table())
    assert shown[0] == stats_stages
    assert shown[1] == [(e.src, e.dst, e.maxsize) for e in spec.edges]
    if options == "tracked" and name not in ("multiclass_topdown", "multiclass_centered_instance",
                                             "multiclass_bottomup"):
        assert {"filter", "track", "track_cleanup"} <= set(stats_stages)


def test_listing_matches_a_real_stats_run(assets: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    model = str(assets / f"{CKPT}centroid")
    flags = ["--tracking", "--forward-workers", "2", "--batch-size", "2"]
    stages, _ = _listing(capsys, ["graphs", "centroid", "-m", model, *flags, "--device", "cpu"])
    assert "forward_reorder" in stages and "track" in stages
    rc = main(["track", "-i", str(assets / VIDEO), "-m", model, "-o", str(tmp_path / "o.slp"),
               "--frames", "0-5", "--device", "cpu", "--stats", *flags])
    assert rc == 0
    out = capsys.readouterr().out
    table = out[out.index("stage "):]
    assert _table_stages(table) == stages


def test_mermaid_lists_the_same_graph(capsys: pytest.CaptureFixture[str]) -> None:
    stages, edges = _listing(capsys, ["graphs", "topdown", "--forward-workers", "3"])
    assert main(["graphs", "topdown", "--forward-workers", "3", "--mermaid"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("flowchart LR")
    names = re.findall(r'"([^"]+)"', text)
    assert names == stages
    assert len(re.findall(r"-->\|(\d+)\|", text)) == len(edges)
