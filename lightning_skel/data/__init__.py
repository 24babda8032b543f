"""Skeleton data: the npz format, readers, the generator, datasets and the data module."""

from lightning_skel.data.io import SkeletonData, load_npz, save_npz, validate

__all__ = ["SkeletonData", "load_npz", "save_npz", "validate"]
