"""Inputs and outputs on disk: readers, input planning and output naming."""

from sleapflow.io.naming import default_output_path
from sleapflow.io.plan import InputPlan, WorkItem
from sleapflow.io.planning import HDF5_SUFFIXES, IMAGE_SUFFIXES, VIDEO_SUFFIXES, plan_input
from sleapflow.io.readers import PyAVReader, SioReader, VideoInfo, is_grayscale, open_reader, probe_video

__all__ = [
    "HDF5_SUFFIXES",
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "InputPlan",
    "PyAVReader",
    "SioReader",
    "VideoInfo",
    "WorkItem",
    "default_output_path",
    "is_grayscale",
    "open_reader",
    "plan_input",
    "probe_video",
]
