from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

# The real recordings beside the checkout (../shared/data); tests that need them skip when it is absent.
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
requires_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"real recordings not found at {DATA}")


# Under pytest-xdist (``make test`` runs a worker per core) each worker keeps to one thread, so that the
# workers do not contend for the cores.
THREADS = 1 if os.environ.get("PYTEST_XDIST_WORKER") else 2


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    torch.set_num_threads(min(THREADS, torch.get_num_threads()))
