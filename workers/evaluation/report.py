"""Evaluation reports: a JSON file and a PNG plot of mIoU against the number of clicks."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

HEADLINE = ("noc@85", "noc@90", "nof@90", "miou@1", "miou@3", "miou@5", "seconds_per_click",
            "encoder_seconds_per_image", "num_samples")


def write_json_report(report: dict[str, Any], path: str | Path) -> Path:
    """Write ``report`` as indented JSON via a temporary file (never a half-written report)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(path)
    return path


def plot_miou_curves(results: dict[str, dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Plot each result's ``miou_curve`` (mIoU after 1..N clicks) into one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for label, result in results.items():
        curve = result["miou_curve"]
        k = min(5, len(curve))
        ax.plot(range(1, len(curve) + 1), curve, marker="o", markersize=3,
                label=f"{label} (NoC@90 {result['noc@90']:.2f}, mIoU@{k} {curve[k - 1]:.3f})")
    ax.set_xlabel("number of clicks")
    ax.set_ylabel("mIoU")
    ax.set_ylim(0, 1)
    ax.set_xticks(range(1, max(len(r["miou_curve"]) for r in results.values()) + 1, 2))
    ax.grid(alpha=0.3)
    ax.axhline(0.85, color="grey", lw=0.6, ls="--")
    ax.axhline(0.90, color="grey", lw=0.6, ls=":")
    ax.legend(loc="lower right", fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def headline(result: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of one evaluation (no per-sample data)."""
    return {k: result[k] for k in HEADLINE if k in result}
