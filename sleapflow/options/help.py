"""Help text for every command's options: the commands' own, and the inference options' from their
declaration; spellings as :mod:`sleapflow.options.spelling` makes them."""

from __future__ import annotations

from typing import Any

from cyclopts import Parameter

from sleapflow.options.declared import option
from sleapflow.options.spelling import KNOWN, canonical_argv
from sleapflow.options.spelling import opt as _spelled

__all__ = ("HELP", "KNOWN", "canonical_argv", "opt")

#: Help for the options that are not inference options (the inference options carry their help
#: in their declaration, :class:`~sleapflow.options.config.InferenceConfig`), in the words of
#: someone who labels animals, not someone who trains nets.
HELP: dict[str, str] = {
    # --- input and output
    "data_path": "What to predict on: a video (.mp4, .avi, ...), a SLEAP labels file (.slp or "
                 ".pkg.slp), an HDF5 video or a folder of images. Repeat it (-i A.mp4 -i "
                 "B.mp4), or give a folder or a quoted glob of videos, to run many videos in "
                 "one call with the models loaded once; each gets its own output.",
    "output_format": "File format(s) to write, repeatable: slp (SLEAP labels), analysis_h5 "
                     "(SLEAP's analysis HDF5, for MATLAB/Python), csv (see --csv_format) or "
                     "nwb (Neurodata Without Borders). Other formats go beside the .slp path "
                     "with their own suffix.",
    "csv_format": "Layout of --output_format csv: sleap (SLEAP's columns, one row per animal "
                  "and frame) or dlc (DeepLabCut's header rows, one row per frame).",
    "nwb_metadata": "NWB subject and session metadata from a JSON or YAML file (keys: "
                    "subject_id, species, sex, age, subject_description, session_description, "
                    "session_id, session_start_time, experimenter, lab, institution, "
                    "experiment_description, identifier, frame_rate); the --nwb_* options "
                    "override its values.",
    "nwb_subject_id": "NWB: the animal's ID (without it the file says the subject is unknown).",
    "nwb_species": "NWB: the species, as a Latin binomial (Mus musculus) or an NCBI taxonomy "
                   "URL.",
    "nwb_sex": "NWB: the animal's sex: M, F, U (unknown) or O (other).",
    "nwb_age": "NWB: the animal's age as an ISO 8601 duration (P90D: 90 days; P90D/ for "
               "at least 90 days).",
    "nwb_session_description": "NWB: what happened in the session.",
    "nwb_session_start_time": "NWB: when the session started, ISO 8601 (2026-05-01T09:30:00+02:00); "
                              "default: the video's creation time, else the export's.",
    "nwb_experimenter": "NWB: who ran the experiment (repeatable).",
    "nwb_lab": "NWB: the lab.",
    "nwb_institution": "NWB: the institution.",
    "nwb_frame_rate": "NWB: frames per second of an image folder (videos carry their own frame "
                      "times).",
    "render": "Also draw the predictions over the video and write OUTPUT.mp4 to look at.",
    "gui": "Print progress as one JSON line per update on stdout (for SLEAP's GUI), as "
           "sleap-nn track --gui does; messages go to stderr.",
    "ray_gpus_per_worker": "Ray: the share of a GPU each worker asks for, more than 0 and at "
                           "most 1 (default 1: a GPU each). 0.5 runs two workers per GPU, for "
                           "models too small to keep a card busy alone.",
    "max_retries": "Ray: how many times a video (or chunk) whose worker process died (a crash, "
                   "out of memory, a lost node) runs again on a new worker. After that it is "
                   "recorded as failed with its last error, the rest of the run finishes and "
                   "the exit code is 1 (default: 2).",
    # --- reporting
    "summary_json": "Also write the end-of-run summary (per input: status, output or error, "
                    "frames, instances, tracks, seconds) as JSON to this file.",
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
    "fps": "Frame rate of the rendered video (default: the source video's own).",
    "scale": "Scale the picture by this factor (0.5 = half size, faster).",
    "marker_size": "Radius of the body-part dots, in pixels.",
    "line_width": "Width of the skeleton's lines, in pixels.",
    "color_by": "Colour per track, instance or node; auto picks track when there are tracks. "
                "A track (or class) keeps its colour in every frame and every output.",
    "palette": "The colours: standard, distinct, rainbow, warm, cool, pastel, seaborn, "
               "tableau10 or viridis.",
    "trail_length": "Draw each animal's positions over the last N frames (0 = no trails).",
    "show_names": "Write each animal's track (or class) name beside it.",
    # --- info / demo
    "model_dirs": "One or more model folders to describe.",
    "json": "Print as JSON instead of text.",
    "out_dir": "Folder for the demo's clip, predictions and pictures.",
}


def opt(name: str, *short: str, help: str | None = None, negative: bool = False,
        **kwargs: Any) -> Parameter:
    """A command's option, spelled as sleap-nn spells it (:func:`sleapflow.options.spelling.opt`),
    with ``help``, or else its help from :data:`HELP` or from the inference option of that name:
    a command that takes an inference option on its own (``bench --batch_size``, ``eval
    --oks_stddev``) says the same about it as its declaration does."""
    text = help if help is not None else HELP[name] if name in HELP else option(name).help
    return _spelled(name, *short, help=text, negative=negative, **kwargs)
