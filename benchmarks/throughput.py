"""Training throughput of every registered model, and Lightning's overhead over a plain PyTorch loop.

For each model (UTD-sized: kinect20, T=64, M=1, batch 16, the utd_* experiment widths) the same
``ClassificationSystem`` (model, loss, metrics, Adam) is trained for the same steps on the same in-memory
batches twice: by ``pytorch_lightning.Trainer.fit`` and by a plain loop that calls the system's own
``training_step`` (forward, loss, metric and mean-loss updates), then zero_grad, backward and step, and
computes the epoch's metrics at the end, as Lightning does. The two alternate ``--repeats`` times and the
medians are compared, so both see the same machine load. Lightning's time is that of its training loop
(on_train_start to on_train_end): the Trainer's one-off setup is not per-step overhead.

    .venv/bin/python benchmarks/throughput.py [--steps 30] [--repeats 3] [--models hcn agcn ...]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from common import ROOT, save_results
from torch.utils.data import DataLoader, Dataset

from lightning_skel.models import list_models
from lightning_skel.systems import ClassificationSystem

SIZES = {  # the utd_* experiment sizes
    "hcn": {"variant": "compact", "width": 32, "feature_dim": 128},
    "stgcn": {"channels": 32, "num_blocks": 6},
    "agcn": {"channels": 32, "num_blocks": 6},
    "sgn": {"channels": 32, "num_frames": 64},
    "emotion": {},
}


class Batches(Dataset):
    def __init__(self, n: int, window: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 3, window, 20, 1, generator=g) * 0.3
        self.y = torch.randint(0, 27, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i], self.x.shape[2], i


def make_system(model: str) -> ClassificationSystem:
    torch.manual_seed(0)
    return ClassificationSystem(
        model=model, num_classes=27, layout="kinect20", num_persons=1, model_kwargs=SIZES.get(model, {}),
        optimizer={"name": "adam", "lr": 1e-3}, scheduler={"name": "constant"},
    )  # fmt: skip


class LoopTimer(pl.Callback):
    """Time of the training loop itself, from its start to its end (the Trainer's one-off setup excluded)."""

    def on_train_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        self.seconds = time.perf_counter() - self.start


def run_lightning(model: str, loader: DataLoader, steps: int) -> float:
    system = make_system(model)
    timer = LoopTimer()
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
        callbacks=[timer],
    )  # fmt: skip
    trainer.fit(system, train_dataloaders=loader)
    return timer.seconds


def run_plain(model: str, loader: DataLoader, steps: int) -> float:
    system = make_system(model)
    system.train()
    opt = torch.optim.Adam(system.parameters(), lr=1e-3)
    start = time.perf_counter()
    done = 0
    while done < steps:
        for batch in loader:
            loss = system.training_step(batch, done)
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if done == steps:
                break
    system.metrics["train_metrics"].compute()
    system.mean_loss["train_loss"].compute()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list_models())
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "throughput.json")
    args = parser.parse_args()
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    loader = DataLoader(Batches(args.batch_size * args.steps, 64), batch_size=args.batch_size, shuffle=False)
    results = {}
    for model in args.models:
        run_plain(model, loader, 3)  # warm-up
        plain, lit = [], []
        for _ in range(args.repeats):
            plain.append(run_plain(model, loader, args.steps))
            lit.append(run_lightning(model, loader, args.steps))
        p, q = statistics.median(plain), statistics.median(lit)
        results[model] = {
            "samples_per_s_plain": args.batch_size * args.steps / p,
            "samples_per_s_lightning": args.batch_size * args.steps / q,
            "lightning_overhead": q / p - 1,
        }
        r = results[model]
        print(f"{model:<8} plain {r['samples_per_s_plain']:7.1f}/s  lightning {r['samples_per_s_lightning']:7.1f}/s  "
              f"overhead {100 * r['lightning_overhead']:+5.1f} %", flush=True)  # fmt: skip
    save_results(args.out, {"results": results, "steps": args.steps})
    return 0


if __name__ == "__main__":
    sys.exit(main())
