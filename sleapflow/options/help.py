"""Option spellings and help text for every command: one underscore name per option (sleap-nn's
spelling) in help, hyphenated spellings accepted by rewriting them before parsing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cyclopts import Parameter

__all__ = ("HELP", "KNOWN", "canonical_argv", "opt")


#: Every long option name registered through :func:`opt` (``--batch_size``, ``--no-ensure_rgb``).
KNOWN: set[str] = set()

#: Help for each option, in the words of someone who labels animals, not someone who trains nets.
HELP: dict[str, str] = {
    # --- input and output
    "data_path": "What to predict on: a video (.mp4, .avi, ...), a SLEAP labels file (.slp or "
                 ".pkg.slp), an HDF5 video or a folder of images. Repeat it (-i A.mp4 -i "
                 "B.mp4), or give a folder or a quoted glob of videos, to run many videos in "
                 "one call with the models loaded once; each gets its own output.",
    "model_paths": "A trained model folder (from SLEAP or sleap-nn training). Top-down needs two: "
                   "give the centroid and the centered-instance model, in either order, as "
                   "-m A -m B or -m A B. Leave out to only re-track an existing .slp.",
    "output_path": "Where to write the predictions (.slp). Default: next to the input, named "
                   "INPUT.predictions.slp. With several inputs, a folder (ending in /) to put "
                   "every INPUT.predictions.slp in.",
    "output_format": "File format(s) to write, repeatable: slp (SLEAP labels), analysis_h5 "
                     "(SLEAP analysis HDF5, for MATLAB/Python), csv (one row per frame and "
                     "instance) or nwb (Neurodata Without Borders). Other formats go beside the "
                     ".slp path with their own suffix.",
    "render": "Also draw the predictions over the video and write OUTPUT.mp4 to look at.",
    "gui": "Print progress as one JSON line per update on stdout (for SLEAP's GUI), as "
           "sleap-nn track --gui does; messages go to stderr.",
    "runtime": "How the network is run: auto (the fastest runtime that matches the reference "
               "for this device and model: ONNX Runtime on CPU, torch elsewhere; the choice "
               "is logged and kept in the output's provenance), torch, onnx or tensorrt "
               "(NVIDIA GPUs, extra sleapflow[tensorrt]).",
    "precision": "Number format of the network: fp32 (exact), bf16 (CUDA, or a CPU with AMX / "
                 "AVX512-BF16: about 2x faster there) or fp16 (CUDA); the reduced ones give "
                 "slightly different maps.",
    "device": "Where the network runs: auto (a GPU if there is one), cpu, cuda, cuda:N or mps.",
    # --- frame selection
    "frames": "Which frames to predict, e.g. '0-100,200-300' or '1,5,9' (inclusive ranges). "
              "Default: every frame. With a .slp input and no --video_index, positions count "
              "labeled frames.",
    "only_labeled_frames": "With a .slp input: only frames that have user labels.",
    "only_suggested_frames": "With a .slp input: only the frames suggested for labeling.",
    "exclude_user_labeled": "With a .slp input: skip frames that already have user labels.",
    "only_predicted_frames": "With a .slp input: only frames that already have predictions.",
    "no_empty_frames": "Leave frames where nothing was found out of the output.",
    "video_index": "With a multi-video .slp input: predict on this video only (0-based).",
    "video_dataset": "With an HDF5 video input: the dataset that holds the frames.",
    "video_input_format": "With an HDF5 video input: the frames' layout, channels_last "
                          "(frames, height, width, channels) or channels_first.",
    # --- preprocessing
    "batch_size": "Frames sent through the network at once. Larger is faster on a GPU and uses "
                  "more memory.",
    "max_instances": "Keep at most this many animals per frame (the best scoring ones). "
                     "Default: no limit.",
    "max_height": "Pad or resize frames to this height before the network (default: the "
                  "model's training setting).",
    "max_width": "Pad or resize frames to this width before the network (default: the model's "
                 "training setting).",
    "input_scale": "Scale frames by this factor before the network (default: the model's "
                   "training setting).",
    "ensure_rgb": "Convert frames to 3-channel colour before the network (default: as the "
                  "model was trained).",
    "ensure_grayscale": "Convert frames to 1-channel grayscale before the network (default: as "
                        "the model was trained).",
    "crop_size": "Top-down: side of the square crop around each animal, in pixels (default: "
                 "the model's training setting).",
    "anchor_part": "Top-down: the body part crops are centred on (default: the model's anchor, "
                   "or the middle of the animal's box).",
    "backbone_ckpt_path": "Take the backbone weights from this other checkpoint (.ckpt).",
    "head_ckpt_path": "Take the head weights from this other checkpoint (.ckpt).",
    # --- peaks and grouping
    "peak_threshold": "Confidence (0-1) a body part needs to be reported; lower finds more "
                      "points, including wrong ones.",
    "integral_refinement": "Sub-pixel refinement of each body part: integral (finer) or none.",
    "integral_patch_size": "Pixels around each peak used by the integral refinement.",
    "max_edge_length_ratio": "Bottom-up: the longest a body edge may be, as a fraction of the "
                             "frame's larger side.",
    "dist_penalty_weight": "Bottom-up: how strongly long edges are penalised when joining body "
                           "parts into animals.",
    "n_points": "Bottom-up: points sampled along each candidate edge to score it.",
    "min_instance_peaks": "Bottom-up: an animal needs at least this many body parts (or this "
                          "fraction when below 1).",
    "min_line_scores": "Bottom-up: the lowest score an edge may have to join two body parts.",
    "queue_maxsize": "Items each stage may hold waiting for the next one; bounds memory.",
    # --- filters
    "filter_overlapping": "Remove duplicate detections of the same animal.",
    "filter_overlapping_method": "How duplicates are measured: iou (box overlap) or oks "
                                 "(keypoint similarity).",
    "filter_overlapping_threshold": "Overlap above which the lower scoring of two detections "
                                    "is removed.",
    "filter_min_visible_nodes": "Drop animals with fewer found body parts than this.",
    "filter_min_visible_node_fraction": "Drop animals with a smaller fraction of their body "
                                        "parts found than this (0-1).",
    "filter_min_mean_node_score": "Drop animals whose body parts' mean confidence is below this.",
    "filter_min_instance_score": "Drop animals whose overall score is below this.",
    # --- tracking
    "tracking": "Follow each animal from frame to frame and give it a track (identity).",
    "tracking_window_size": "Past frames compared against when matching animals to tracks.",
    "min_new_track_points": "An unmatched animal starts a new track only with at least this "
                            "many body parts.",
    "candidates_method": "Which past animals a detection may match: fixed_window (the last "
                         "frames) or local_queues (the last appearances of each track).",
    "min_match_points": "Body parts two detections must share to be compared.",
    "features": "What is compared between frames: keypoints, centroids, bboxes or image "
                "(appearance).",
    "scoring_method": "How similar two detections are: oks, cosine_sim, iou or euclidean_dist.",
    "scoring_reduction": "How scores against a track's past detections are combined: mean, max "
                         "or robust_quantile.",
    "robust_best_instance": "With robust_quantile: the quantile used (1.0 = the best match).",
    "track_matching_method": "How detections are assigned to tracks: hungarian (best overall) "
                             "or greedy (best first).",
    "max_tracks": "At most this many tracks (animals) in the whole video. Default: no limit.",
    "use_flow": "Predict where each animal moved with optical flow before matching.",
    "of_img_scale": "Optical flow: scale frames by this before computing flow (smaller is "
                    "faster).",
    "of_window_size": "Optical flow: search window in pixels.",
    "of_max_levels": "Optical flow: pyramid levels (more follows faster motion).",
    "oks_stddev": "Spread (standard deviation) of keypoint similarity, as a fraction of the "
                  "animal's size.",
    "use_kalman": "Predict each track's next position with a Kalman filter.",
    "post_connect_single_breaks": "After tracking, join a track that breaks for one frame when "
                                  "only one track is missing.",
    "tracking_target_instance_count": "How many animals are expected per frame (used by the "
                                      "clean-up options).",
    "tracking_pre_cull_to_target": "Before tracking, keep only the expected number of animals "
                                   "per frame (0 = off).",
    "tracking_pre_cull_iou_threshold": "Before tracking, remove detections overlapping more "
                                       "than this (0 = off).",
    "tracking_clean_instance_count": "After tracking, keep at most this many animals per frame "
                                     "(0 = off).",
    "tracking_clean_iou_threshold": "After tracking, remove instances overlapping more than "
                                    "this (0 = off).",
    # --- engine
    "graph": "Run this named graph instead of the one chosen from the model types (see "
             "sleapflow graphs).",
    "postprocess_workers": "Threads that join bottom-up body parts into animals.",
    "torch_threads": "CPU threads the network may use (default: torch's choice).",
    "forward_workers": "On the CPU: batches in flight per model at once (default: one per "
                       "core).",
    "channels_last": "Faster CPU convolutions; results differ from sleap-nn in the last digits.",
    "stats": "At the end, print a table of each stage's speed and where time went.",
    "verbose": "Print debug messages.",
    # --- eval
    "ground_truth_path": "The labels you trust (.slp with user-labeled instances).",
    "predicted_path": "The predictions to score (.slp).",
    "save_metrics": "Write the metrics here (.npz, as sleap-nn writes it, plus a .json beside).",
    "match_threshold": "The lowest keypoint similarity (OKS) at which a prediction counts as "
                       "matching a labeled animal.",
    "oks_scale": "Animal size used by OKS, in pixels (default: each animal's box area).",
    "user_labels_only": "Score against user-labeled instances only, not predicted ones in the "
                        "ground-truth file.",
    "match_method": "How predictions are paired with labels: oks, centroid or auto (centroid "
                    "for single-point skeletons).",
    # --- graphs / bench
    "mermaid": "Print the graph as Mermaid flowchart text (paste into a Markdown file).",
    "data": "Video or .slp to measure on (default: a generated synthetic clip).",
    "model": "Model folder(s) to measure (default: a synthetic model of realistic size, random "
             "weights).",
    # --- render
    "predictions": "Predictions file (.slp) to draw; its video must be where the file says.",
    "output": "Output file: .mp4 for a video, .png for one frame (default: PREDICTIONS.mp4).",
    "fps": "Frame rate of the rendered video (default: the source video's).",
    "scale": "Scale the picture by this factor (0.5 = half size, faster).",
    "marker_size": "Radius of the body-part dots, in pixels.",
    "line_width": "Width of the skeleton's lines, in pixels.",
    "color_by": "Colour per track, instance or node; auto picks track when there are tracks.",
    # --- info / demo
    "model_dirs": "One or more model folders to describe.",
    "json": "Print as JSON instead of text.",
    "out_dir": "Folder for the demo's clip, predictions and pictures.",
}


def opt(name: str, *short: str, help: str | None = None, negative: bool = False,
        **kwargs: Any) -> Parameter:
    """An option spelled as sleap-nn spells it (underscores) with its help from :data:`HELP`.

    Only the underscore name (and short flags) are listed; :func:`canonical_argv` maps the
    hyphenated spelling onto it. ``negative`` adds ``--no-NAME``; lists get no ``--empty-NAME``.
    """
    text = help if help is not None else HELP[name]
    names = [f"--{name}", *short]
    KNOWN.add(f"--{name}")
    neg: Any = ()
    if negative:
        neg = [f"--no-{name}"]
        KNOWN.add(f"--no-{name}")
    return Parameter(name=names, help=text, negative=neg, negative_iterable=(), **kwargs)


def canonical_argv(argv: Sequence[str]) -> list[str]:
    """``--batch-size 4`` → ``--batch_size 4`` (and ``--x-y=v``) for every registered option;
    anything else (values, unknown options) is left for the parser to judge."""
    hyphenated = {name[:2] + name[2:].replace("_", "-"): name for name in KNOWN if "_" in name}
    out = []
    for token in argv:
        head, sep, tail = token.partition("=")
        if head in hyphenated:
            token = hyphenated[head] + sep + tail
        out.append(token)
    return out
