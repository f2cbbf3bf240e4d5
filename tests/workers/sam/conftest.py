"""Fixtures for the SAM model-core tests: a seeded ``lite`` model, checkpoint layout tables, images."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[3]
LAYOUT_DIR = Path(os.environ.get("MASKLOOP_CHECKPOINT_LAYOUTS",
                                 REPO_ROOT.parent / "shared" / "docs" / "checkpoint-layouts"))


def read_layout(arch: str) -> list[tuple[str, tuple[int, ...], str]]:
    """Rows (key, shape, dtype) of ``checkpoint-layouts/<arch>.tsv``; skips when the table is absent."""
    path = LAYOUT_DIR / f"{arch}.tsv"
    if not path.is_file():
        pytest.skip(f"checkpoint layout table not found: {path} (set MASKLOOP_CHECKPOINT_LAYOUTS)")
    rows = []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            shape = tuple(int(s) for s in row["shape"].split("x")) if row["shape"] else ()
            rows.append((row["key"], shape, row["dtype"]))
    return rows


def random_state_dict(rows: list[tuple[str, tuple[int, ...], str]], device: str = "cpu",
                      seed: int = 0) -> dict[str, torch.Tensor]:
    """A state_dict with the table's keys/shapes/dtypes filled with random values."""
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for key, shape, dtype in rows:
        dt = getattr(torch, dtype)
        if device == "meta":
            state[key] = torch.empty(shape, dtype=dt, device="meta")
        elif dt.is_floating_point:
            state[key] = torch.randn(shape, generator=gen, dtype=dt) * 0.02
        else:
            state[key] = torch.randint(0, 100, shape, generator=gen, dtype=dt)
    return state


@pytest.fixture(scope="module")
def lite_model():
    """A randomly initialised ``lite`` model in eval mode on the CPU (seeded)."""
    from workers.sam import build_sam

    torch.manual_seed(0)
    model = build_sam("lite", device="cpu")
    # random init gives near-constant masks; perturb the decoder so thresholding has both signs
    with torch.no_grad():
        for p in model.mask_decoder.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


@pytest.fixture
def image() -> np.ndarray:
    """A 96×160 RGB uint8 image with a bright rectangle."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 60, size=(96, 160, 3), dtype=np.uint8)
    img[20:60, 40:110] = 220
    return img


@pytest.fixture
def layout():
    """``layout(arch)`` → rows of the official checkpoint layout table (skips when absent)."""
    return read_layout


@pytest.fixture
def make_state_dict():
    """``make_state_dict(rows, device="cpu", seed=0)`` → a random state_dict with the table's layout."""
    return random_state_dict
