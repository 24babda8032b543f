"""Skeleton topology, kinematic features and normalisation (no torch modules, no Lightning)."""

from lightning_skel.skeleton.layouts import GAIT16_JOINTS, Layout, get_layout, list_layouts

__all__ = ["GAIT16_JOINTS", "Layout", "get_layout", "list_layouts"]
