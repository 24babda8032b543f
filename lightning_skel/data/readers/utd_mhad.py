"""UTD-MHAD skeletons (Chen, Jafari & Kehtarnavaz, ICIP 2015): one MATLAB ``.mat`` file per clip.

Each ``aA_sS_tT_skeleton.mat`` holds ``d_skel (20, 3, T)`` float64, Kinect v1 camera coordinates in metres,
with the joints in the dataset's own order (1 head, 2 shoulder_center, 3 spine, 4 hip_center, 5-8 left
shoulder/elbow/wrist/hand, 9-12 right, 13-16 left hip/knee/ankle/foot, 17-20 right). The reader permutes them
into the Kinect v1 SDK order of the ``kinect20`` layout. Action ``A`` (1..27) gives the label ``A - 1``,
``S`` (1..8) the subject. The standard cross-subject protocol ``xsub`` trains on odd subjects and tests on
even ones.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

import numpy as np
import scipy.io

from lightning_skel.data.readers import READERS
from lightning_skel.data.readers.base import Clip, Reader, ReadError

UTD_MHAD_ACTIONS: tuple[str, ...] = (
    "right arm swipe to the left",
    "right arm swipe to the right",
    "right hand wave",
    "two hand front clap",
    "right arm throw",
    "cross arms in the chest",
    "basketball shoot",
    "right hand draw x",
    "right hand draw circle (clockwise)",
    "right hand draw circle (counter clockwise)",
    "draw triangle",
    "bowling (right hand)",
    "front boxing",
    "baseball swing from right",
    "tennis right hand forehand swing",
    "arm curl (two arms)",
    "tennis serve",
    "two hand push",
    "right hand knock on door",
    "right hand catch an object",
    "right hand pick up and throw",
    "jogging in place",
    "walking in place",
    "sit to stand",
    "stand to sit",
    "forward lunge (left foot forward)",
    "squat (two arms stretch out)",
)

# kinect20 joint j is UTD-MHAD joint UTD_TO_KINECT20[j] (0-based): the four trunk joints are listed head
# first in UTD-MHAD and hip first in the SDK; the limbs are already in SDK order.
UTD_TO_KINECT20: tuple[int, ...] = (3, 2, 1, 0, *range(4, 20))

_NAME = re.compile(r"a(\d+)_s(\d+)_t(\d+)", re.IGNORECASE)


def _natural_key(path: Path) -> list:
    """Sort ``a2_...`` before ``a10_...``: digit runs compare as numbers."""
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", str(path))]


@READERS.register("utd_mhad")
class UTDMHADReader(Reader):
    """Reader ``utd_mhad``: UTD-MHAD ``aA_sS_tT_skeleton.mat`` files, joints permuted into ``kinect20``.

    Args:
        options: none are used.

    Example:
        >>> import scipy.io
        >>> scipy.io.savemat("a1_s1_t1_skeleton.mat", {"d_skel": np.zeros((20, 3, 10))})  # (V, C, T)
        >>> (clip,) = UTDMHADReader().read_file(Path("a1_s1_t1_skeleton.mat"))
        >>> clip.x.shape, clip.label, clip.subject, UTDMHADReader().split_of(clip, "xsub")
        ((3, 10, 20, 1), 0, 1, 'train')
    """

    name: ClassVar[str] = "utd_mhad"
    layout: ClassVar[str] = "kinect20"
    class_names: ClassVar[tuple[str, ...]] = UTD_MHAD_ACTIONS
    splits: ClassVar[tuple[str, ...]] = ("xsub",)

    def files(self, src: Path) -> list[Path]:
        if src.is_file():
            return [src]
        found = list(src.rglob("*_skeleton.mat")) or list(src.rglob("*.mat"))
        return sorted(found, key=_natural_key)

    def read_file(self, path: Path) -> list[Clip]:
        m = _NAME.search(path.name)
        if m is None:
            raise ReadError(path, "file name does not match aA_sS_tT[_skeleton].mat (action, subject, trial)")
        action, subject = int(m.group(1)), int(m.group(2))
        if not 1 <= action <= len(UTD_MHAD_ACTIONS):
            raise ReadError(path, f"action a{action} outside 1..{len(UTD_MHAD_ACTIONS)}")
        try:
            mat = scipy.io.loadmat(path)
        except Exception as e:  # any failure to parse the bytes is a property of the file, not a bug here
            raise ReadError(path, f"not a readable MATLAB .mat file ({type(e).__name__}: {e})") from e
        if "d_skel" not in mat:
            found = sorted(k for k in mat if not k.startswith("__"))
            raise ReadError(path, f"no variable 'd_skel' in the .mat file (found {found})")
        skel = mat["d_skel"]
        if not isinstance(skel, np.ndarray) or skel.dtype.kind not in "iuf":
            raise ReadError(path, f"d_skel must be a numeric array, got {getattr(skel, 'dtype', type(skel))}")
        if skel.ndim == 2:  # MATLAB drops a trailing singleton dimension: a one-frame clip
            skel = skel[:, :, None]
        if skel.ndim != 3 or skel.shape[1] != 3 or skel.shape[2] < 1:
            raise ReadError(path, f"d_skel must have shape (20, 3, T) with T >= 1, got {skel.shape}")
        if skel.shape[0] != len(UTD_TO_KINECT20):
            raise ReadError(
                path, f"wrong joint count: d_skel has {skel.shape[0]} joints, expected {len(UTD_TO_KINECT20)}"
            )
        if not np.isfinite(skel).all():
            raise ReadError(path, "d_skel holds NaN or Inf values")
        # (V, C, T) in UTD order -> (C, T, V) in SDK order -> (C, T, V, M=1)
        x = skel[list(UTD_TO_KINECT20)].transpose(1, 2, 0)[..., None].astype(np.float32)
        return [Clip(x=np.ascontiguousarray(x), label=action - 1, name=m.group(0).lower(), subject=subject)]

    def split_of(self, clip: Clip, split: str) -> str:
        if split == "xsub":
            return "train" if clip.subject % 2 == 1 else "test"
        return super().split_of(clip, split)
