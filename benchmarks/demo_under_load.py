"""``make demo``'s wall time while another CPU-heavy job runs, for several thread settings side by side.

Starts ``--load`` busy processes (a pure-Python loop each, one runnable thread per process: another user's
job on a shared machine), then runs the demo (``python -m lightning_skel.demo``, what ``make demo`` runs)
once per ``--threads`` value, in turn, in a fresh process. ``threads=2`` on this 2-core machine is torch's
default, the demo before the ``threads`` key; ``auto`` is today's default. A run that passes ``--timeout``
seconds is stopped and recorded with the last demo stage it reached. Each result is written as it finishes
(a rerun skips settings already measured), with the demo's line count and the load average beside it.

    .venv/bin/python benchmarks/demo_under_load.py --threads auto 2 --load 1 --timeout 3600
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, save_results

STAGE = re.compile(r"([1-4])/4 ")


def demo(threads: str, timeout: float, log: Path) -> dict:
    env = {**os.environ, "WANDB_MODE": "offline"}
    env.pop("OMP_NUM_THREADS", None)  # the setting under test decides
    cmd = [sys.executable, "-m", "lightning_skel.demo", f"threads={threads}"]
    print("+", " ".join(cmd), flush=True)
    load0 = os.getloadavg()[0]
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            rc = None
    wall = time.perf_counter() - start
    lines = log.read_text(errors="replace").splitlines()
    stages = [int(m.group(1)) for m in map(STAGE.search, lines) if m]
    return {
        "threads": threads,
        "wall_time_s": round(wall, 1),
        "finished": rc == 0,
        "returncode": rc,
        "timed_out": rc is None,
        "last_stage_reached": max(stages, default=0),
        "output_lines": len(lines),
        "repeated_lines": len(lines) - len(set(lines)),
        "load_average_1min_at_start": round(load0, 2),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", nargs="+", default=["auto", "2"], help="demo threads= values, in order")
    parser.add_argument("--load", type=int, default=1, help="busy processes running beside the demo")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds before a demo is stopped")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "demo_under_load.json")
    args = parser.parse_args()
    if args.load < 0 or args.timeout <= 0:
        parser.error("--load must be >= 0 and --timeout > 0")
    done = json.loads(args.out.read_text())["runs"] if args.out.is_file() else []
    logs = ROOT / "runs" / "bench_demo_under_load"
    logs.mkdir(parents=True, exist_ok=True)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    try:
        for threads in args.threads:
            if any(r["threads"] == threads and r["load_processes"] == args.load for r in done):
                continue
            row = {
                **demo(threads, args.timeout, logs / f"demo_threads_{threads}.log"),
                "load_processes": args.load,
            }
            done.append(row)
            print(json.dumps(row), flush=True)
            save_results(args.out, {"benchmark": "make demo wall time under load", "runs": done})
    finally:
        for p in busy:
            p.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
