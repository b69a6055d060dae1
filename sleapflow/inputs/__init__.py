"""Inputs: frame readers, probing, and planning which frames of which videos a run reads."""

from sleapflow.inputs.readers import PyAVReader, SioReader, VideoInfo, is_grayscale, open_reader, probe_video
from sleapflow.inputs.selection import HDF5_SUFFIXES, IMAGE_SUFFIXES, VIDEO_SUFFIXES, plan_input
from sleapflow.messages import InputPlan, WorkItem

__all__ = (
    "HDF5_SUFFIXES", "IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "InputPlan", "PyAVReader", "SioReader", "VideoInfo",
    "WorkItem", "is_grayscale", "open_reader", "plan_input", "probe_video",
)
