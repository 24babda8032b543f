"""Parse rate of the compiled NTU ``.skeleton`` reader against straightforward line-by-line Python readers.

    python benchmarks/bench_ntu_parse.py [--data DIR] [--seconds S] [--out benchmarks/results/ntu_parse.json]

Every reader turns a file on disk into the ``(3, T, 25, 2)`` clip array, with the same body selection
(:func:`lightning_skel.data.readers.ntu.select_bodies`), so the rates differ only by how the text is parsed:

* ``compiled``: ``NTUReader.read_file`` (one numba-compiled pass: every field checked
  to be a number, x, y, z converted);
* ``line-by-line``: a ``readline`` loop, ``float()`` per field into lists, one ``np.array`` at the end, then
  x, y, z kept;
* ``dict-per-joint``: the same loop building a dict per body and per joint, as ST-GCN / 2s-AGCN's
  ``read_skeleton_filter`` does, then copying the coordinates joint by joint.

Single process, one file at a time, over the real NTU samples repeated until each reader has run for
``--seconds``; the readers alternate pass by pass so that background load hits them alike. The script checks
that all readers give identical arrays for every file, prints a table and writes it as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numba
import numpy as np

from lightning_skel.data.readers.ntu import NTUReader, RawSkeleton, select_bodies

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ntu60_samples"


def _clip(num_frames: int, frame: list, body_ids: list, joints: list) -> np.ndarray:
    ids: dict[int, int] = {}
    body = [ids.setdefault(b, len(ids)) for b in body_ids]
    raw = RawSkeleton(
        num_frames=num_frames,
        frame=np.asarray(frame, dtype=np.int64),
        body=np.asarray(body, dtype=np.int64),
        body_ids=list(ids),
        xyz=np.asarray(joints, dtype=np.float64).reshape(len(frame), 25, 12)[..., :3],
    )
    return select_bodies(raw)


def read_line_by_line(path: Path) -> np.ndarray:
    """A ``readline`` loop with ``float()`` per field, into lists."""
    frame, body_ids, info, joints = [], [], [], []
    with open(path) as f:
        num_frames = int(f.readline())
        for t in range(num_frames):
            for _ in range(int(f.readline())):
                fields = f.readline().split()
                body_ids.append(int(fields[0]))
                info.append([float(v) for v in fields[1:]])
                num_joints = int(f.readline())
                joints.append([[float(v) for v in f.readline().split()] for _ in range(num_joints)])
                frame.append(t)
    return _clip(num_frames, frame, body_ids, joints)


_BODY_KEYS = (
    "bodyID",
    "clipedEdges",
    "handLeftConfidence",
    "handLeftState",
    "handRightConfidence",
    "handRightState",
    "isResticted",
    "leanX",
    "leanY",
    "trackingState",
)
_JOINT_KEYS = (
    "x",
    "y",
    "z",
    "depthX",
    "depthY",
    "colorX",
    "colorY",
    "orientationW",
    "orientationX",
    "orientationY",
    "orientationZ",
    "trackingState",
)


def read_dict_per_joint(path: Path) -> np.ndarray:
    """The structure of ST-GCN / 2s-AGCN's ``read_skeleton_filter`` + ``read_xyz``: a dict per frame, body
    and joint, then the coordinates copied joint by joint."""
    with open(path) as f:
        sequence = {"numFrame": int(f.readline()), "frameInfo": []}
        for _ in range(sequence["numFrame"]):
            frame_info = {"numBody": int(f.readline()), "bodyInfo": []}
            for _ in range(frame_info["numBody"]):
                body_info = dict(zip(_BODY_KEYS, f.readline().split(), strict=True))
                body_info["numJoint"] = int(f.readline())
                body_info["jointInfo"] = [
                    {k: float(v) for k, v in zip(_JOINT_KEYS, f.readline().split(), strict=True)}
                    for _ in range(body_info["numJoint"])
                ]
                frame_info["bodyInfo"].append(body_info)
            sequence["frameInfo"].append(frame_info)
    frame, body_ids, joints = [], [], []
    for t, frame_info in enumerate(sequence["frameInfo"]):
        for body_info in frame_info["bodyInfo"]:
            xyz = np.zeros((25, 12))
            for j, v in enumerate(body_info["jointInfo"]):
                xyz[j, :3] = [v["x"], v["y"], v["z"]]
            frame.append(t)
            body_ids.append(int(body_info["bodyID"]))
            joints.append(xyz)
    return _clip(sequence["numFrame"], frame, body_ids, joints)


def read_compiled(path: Path, reader: NTUReader = NTUReader()) -> np.ndarray:  # noqa: B008
    return reader.read_file(path)[0].x


READERS: dict[str, Callable[[Path], np.ndarray]] = {
    "compiled": read_compiled,
    "line-by-line": read_line_by_line,
    "dict-per-joint": read_dict_per_joint,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of NTU .skeleton files")
    parser.add_argument("--seconds", type=float, default=4.0, help="run time per reader (default 4)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ntu_parse.json")
    args = parser.parse_args(argv)

    files = sorted(args.data.glob("*.skeleton"))
    if not files:
        print(f"no .skeleton files in {args.data}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    read_compiled(files[0])  # compiles the parser, or loads it from numba's cache
    first_call_s = time.perf_counter() - start
    reference = {p: read_compiled(p) for p in files}
    for name, read in READERS.items():
        for p in files:
            x = read(p)
            if not (x.shape == reference[p].shape and np.array_equal(x, reference[p])):
                print(f"{name} disagrees with the compiled reader on {p.name}", file=sys.stderr)
                return 1

    elapsed = dict.fromkeys(READERS, 0.0)
    cpu = dict.fromkeys(READERS, 0.0)  # process CPU time: less sensitive to other load on the machine
    passes = dict.fromkeys(READERS, 0)
    load_before = os.getloadavg()
    while min(elapsed.values()) < args.seconds:  # alternate passes over all files
        for name, read in READERS.items():
            if elapsed[name] >= args.seconds:
                continue
            start, start_cpu = time.perf_counter(), time.process_time()
            for p in files:
                read(p)
            elapsed[name] += time.perf_counter() - start
            cpu[name] += time.process_time() - start_cpu
            passes[name] += 1
    load_after = os.getloadavg()

    rate = {name: passes[name] * len(files) / elapsed[name] for name in READERS}
    base = rate["compiled"]
    rows = [
        {
            "reader": name,
            "files": passes[name] * len(files),
            "seconds": round(elapsed[name], 3),
            "files_per_s": round(rate[name], 1),
            "ms_per_file": round(1000 / rate[name], 3),
            "cpu_ms_per_file": round(1000 * cpu[name] / (passes[name] * len(files)), 3),
            "speedup_of_compiled": round(base / rate[name], 2),
        }
        for name in READERS
    ]
    machine = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "cpu_count": os.cpu_count(),
        "loadavg_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
    }
    result = {
        "benchmark": "NTU .skeleton parse rate, single process",
        "data": {
            "folder": str(args.data),
            "files": [p.name for p in files],
            "bytes": sum(p.stat().st_size for p in files),
        },
        "first_call_s": round(first_call_s, 3),
        "agree": "all readers give identical (3, T, 25, 2) float32 arrays for every file",
        "machine": machine,
        "results": rows,
    }

    print(
        f"NTU .skeleton parse rate: {len(files)} files ({result['data']['bytes'] / 1e6:.2f} MB), single process"
    )
    print(
        f"machine: {machine['platform']}, {machine['processor']}, {machine['cpu_count']} CPUs, "
        f"Python {machine['python']}, numpy {machine['numpy']}, load {machine['loadavg_before_after']}"
    )
    print(f"{'reader':<16}{'files/s':>10}{'ms/file':>10}{'CPU ms/file':>13}{'compiled is':>16}")
    for row in rows:
        print(
            f"{row['reader']:<16}{row['files_per_s']:>10.1f}{row['ms_per_file']:>10.3f}"
            f"{row['cpu_ms_per_file']:>13.3f}{row['speedup_of_compiled']:>15.2f}x"
        )
    print(f"first call (compiling the parser, or loading it from numba's cache): {first_call_s:.2f} s")
    print("all readers agree on every file (identical arrays)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
