"""eval-tracking: hand-checked numbers on a built pair, facts on the reference's tracked outputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import sleap_io as sio

from sleapflow.cli.app import main
from sleapflow.evaluation import mot
from sleapflow.evaluation.identity import evaluate_labels, run_identity_evaluation

SKELETON = sio.Skeleton(["head", "tail"])


def _frame(video: sio.Video, idx: int, dets: list[tuple[float, str | None]],
           tracks: dict[str, sio.Track]) -> sio.LabeledFrame:
    instances = []
    for x, name in dets:
        pts = np.array([[x, 10.0], [x + 20.0, 30.0]])
        track = tracks.setdefault(name, sio.Track(name)) if name else None
        instances.append(sio.PredictedInstance.from_numpy(pts, skeleton=SKELETON, score=1.0,
                                                          track=track))
    return sio.LabeledFrame(video=video, frame_idx=idx, instances=instances)


def _labels(rows: list[list[tuple[float, str | None]]]) -> sio.Labels:
    video = sio.Video(filename="synthetic.mp4", open_backend=False)
    tracks: dict[str, sio.Track] = {}
    frames = [_frame(video, i, dets, tracks) for i, dets in enumerate(rows)]
    return sio.Labels(labeled_frames=frames, videos=[video], skeletons=[SKELETON],
                      tracks=list(tracks.values()))


@pytest.fixture(scope="module")
def swapped_pair() -> tuple[sio.Labels, sio.Labels]:
    """Two animals at x=0 and x=100 for 6 frames; the prediction swaps their names after frame
    2 and adds one false positive (far from both) on frame 5."""
    gt = _labels([[(0.0, "A"), (100.0, "B")] for _ in range(6)])
    rows = [[(0.0, "p1"), (100.0, "p2")] for _ in range(3)]
    rows += [[(0.0, "p2"), (100.0, "p1")] for _ in range(3)]
    rows[5].append((300.0, "p3"))
    return gt, _labels(rows)


def test_hand_checked_swap(swapped_pair: tuple[sio.Labels, sio.Labels]) -> None:
    gt, pred = swapped_pair
    m = evaluate_labels(gt, pred)
    # Identity block: each GT trajectory reads p1,p1,p1,p2,p2,p2 (or the reverse) -> 1 switch
    # each. Co-matches are 3 for all four (GT, pred) pairs, so the best identity assignment
    # keeps 6 of the 12 matches: IDTP 6, IDFN 12-6, IDFP 13-6 -> IDF1 = 12 / (12+6+7).
    assert m["id_switches"] == 2
    assert m["n_gt_dets"] == 12 and m["n_matched"] == 12 and m["n_pred_dets"] == 13
    assert m["idf1"] == pytest.approx(12 / 25)
    assert m["idp"] == pytest.approx(6 / 13) and m["idr"] == pytest.approx(0.5)
    assert m["idf1_matched"] == pytest.approx(0.5)
    assert m["mean_track_purity"] == pytest.approx(0.5)  # p1: 3 of 6 on A; p2 likewise
    assert (m["mostly_tracked"], m["partly_tracked"], m["mostly_lost"]) == (2, 0, 0)
    assert m["fragmentations"] == 0 and m["mean_gt_coverage"] == 1.0
    assert (m["n_gt_tracks"], m["n_pred_tracks"]) == (2, 3)
    t = m["mot"]
    # CLEAR: 12 TP, 1 FP, 2 switches at frame 3 -> MOTA (12 - 1 - 2) / 12; OKS of a copy is 1.
    assert (t["clr_tp"], t["clr_fn"], t["clr_fp"], t["idsw"], t["frag"]) == (12, 0, 1, 2, 0)
    assert t["mota"] == pytest.approx(9 / 12) and t["moda"] == pytest.approx(11 / 12)
    assert t["motp"] == pytest.approx(1.0)
    assert (t["idtp"], t["idfn"], t["idfp"]) == (6, 6, 7)
    # HOTA: every match has similarity 1, so DetA = 12/13 at every alpha; each (GT, pred) pair
    # shares 3 of 6 + 6 frames: AssA = 4 * 3 * (3 / 9) / 12 = 1/3.
    assert t["det_a"] == pytest.approx(12 / 13) and t["ass_a"] == pytest.approx(1 / 3)
    assert t["hota"] == pytest.approx(math.sqrt(12 / 13 / 3))
    assert t["loc_a"] == pytest.approx(1.0) and len(t["hota_alpha"]) == 19


def test_untracked_and_missing_frames() -> None:
    """Untracked GT is don't-care, untracked predictions never match, a frame missing from the
    prediction scores its GT as misses."""
    gt = _labels([[(0.0, "A"), (100.0, None)], [(0.0, "A"), (100.0, None)], [(0.0, "A")]])
    pred = _labels([[(0.0, "p1"), (100.0, "p2")], [(0.0, None), (100.0, "p2")]])
    m = evaluate_labels(gt, pred)
    assert m["n_gt_dets"] == 3 and m["n_gt_untracked"] == 2
    assert m["n_dont_care"] == 2 and m["n_matched"] == 1 and m["n_pred_untracked"] == 1
    assert m["n_frames_compared"] == 3 and m["n_frames_missing_pred"] == 1
    assert m["mot"]["clr_tp"] == 1 and m["mot"]["clr_fn"] == 2 and m["mot"]["clr_fp"] == 0
    assert m["mot"]["n_dont_care"] == 2


def test_clear_continuity_bonus_and_fragments() -> None:
    """CLEAR keeps last frame's pair even when another prediction is closer; a frame with no
    prediction at all does not break a fragment, a frame with only an unrelated one does."""
    sim = [np.array([[0.9, 0.0]]), np.array([[0.6, 0.95]])]
    seq = mot.MOTSequence([np.array([0]), np.array([0])], [np.array([0, 1])] * 2, sim)
    res = mot.clear_metrics(seq)
    assert res["IDSW"] == 0 and res["CLR_TP"] == 2 and res["CLR_FP"] == 2
    gt = [np.array([0])] * 3
    nothing = mot.clear_metrics(mot.MOTSequence(
        gt, [np.array([0]), np.array([], dtype=int), np.array([0])],
        [np.ones((1, 1)), np.zeros((1, 0)), np.ones((1, 1))]))
    unrelated = mot.clear_metrics(mot.MOTSequence(
        gt, [np.array([0]), np.array([1]), np.array([0])],
        [np.ones((1, 1)), np.zeros((1, 1)), np.ones((1, 1))]))
    assert nothing["Frag"] == 0 and unrelated["Frag"] == 1


def test_duplicate_track_in_frame_skips_mot_block() -> None:
    gt = _labels([[(0.0, "A"), (100.0, "B")]])
    pred = _labels([[(0.0, "p1"), (100.0, "p1")]])
    m = evaluate_labels(gt, pred)
    assert m["n_matched"] == 2
    assert "error" in m["mot"] and "p1" in m["mot"]["error"]


@pytest.fixture(scope="module")
def ref_pair(reference: Path) -> tuple[dict, sio.Labels, sio.Labels]:
    gt_path = reference / "trackonly_local_queues_max2.slp"
    pred_path = reference / "trackonly_default.slp"
    result = run_identity_evaluation(str(gt_path), str(pred_path))
    return result, sio.load_slp(str(gt_path)), sio.load_slp(str(pred_path))


def test_reference_tracked_outputs(ref_pair: tuple[dict, sio.Labels, sio.Labels]) -> None:
    """Both files track the same source poses: every GT pose has an identical prediction, so
    everything matches and the scores differ only by identity."""
    m, gt, pred = ref_pair
    n_gt = sum(1 for lf in gt for i in lf.instances if i.track is not None)
    n_pred = sum(len(lf.instances) for lf in pred)
    pred_names = {i.track.name for lf in pred for i in lf.instances if i.track is not None}
    assert m["n_gt_dets"] == n_gt and m["n_matched"] == n_gt
    assert m["n_pred_dets"] == n_pred and m["n_pred_tracks"] == len(pred_names)
    assert m["n_gt_tracks"] == 2 and m["n_frames_compared"] == len(gt.labeled_frames)
    assert m["mean_gt_coverage"] == 1.0 and m["mostly_tracked"] == 2
    assert m["mot"]["clr_tp"] == n_gt and m["mot"]["clr_fp"] == n_pred - n_gt
    assert m["mot"]["loc_a"] > 0.999
    # More predicted tracks than animals: identity is lost somewhere.
    assert m["id_switches"] > 0 and m["idf1"] < 0.6 and m["mot"]["ass_a"] < 0.5
    assert m["motion_diagnostic"]["is_continuous"]


def test_reference_against_itself(reference: Path) -> None:
    path = str(reference / "trackonly_local_queues_max2.slp")
    m = run_identity_evaluation(path, path)
    assert m["id_switches"] == 0 and m["idf1"] == 1.0 and m["mean_track_purity"] == 1.0
    assert m["mot"]["idsw"] == 0 and m["mot"]["mota"] == 1.0 and m["mot"]["hota"] == 1.0


def test_cli_writes_json_and_rejects_bad_input(reference: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    gt = str(reference / "trackonly_local_queues_max2.slp")
    out = tmp_path / "ids.json"
    assert main(["eval-tracking", "-g", gt, "-p", gt, "-s", str(out)]) == 0
    saved = json.loads(out.read_text())
    assert saved["idf1"] == 1.0 and saved["carrier"] == "pose" and saved["mot"]["hota"] == 1.0
    assert list(saved)[:3] == ["id_switches", "idf1", "idp"]
    assert "IDSW=0" in capsys.readouterr().out
    before = out.read_bytes()
    for bad in (["-p", str(tmp_path / "missing.slp")], ["-p", gt, "--carrier", "mask"],
                ["-p", gt, "--oks_stddev", "0"], ["-p", gt, "--mt_threshold", "2"]):
        capsys.readouterr()
        assert main(["eval-tracking", "-g", gt, *bad, "-s", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("Error:")
    assert out.read_bytes() == before


@pytest.mark.parametrize("command", ["eval", "eval-tracking"])
def test_save_metrics_never_replaces_a_special_file(command: str, reference: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """-s naming a FIFO (which would block the write forever) or a folder is refused before
    anything is read or scored; the FIFO stays a FIFO."""
    import os
    import stat

    labels = str(reference / "trackonly_local_queues_max2.slp")
    fifo = tmp_path / "metrics.json"
    os.mkfifo(fifo)
    folder = tmp_path / "metrics_dir"
    folder.mkdir()
    for target in (fifo, folder):
        assert main([command, "-g", labels, "-p", labels, "-s", str(target)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("Error: --save_metrics") and "not a file" in err[0]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and folder.is_dir() and not any(folder.iterdir())
