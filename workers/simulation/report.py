"""The simulation's report: a terminal table, a JSON file and a PNG chart."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_report(report: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title="Maskloop data engine simulation")
    for col in ("phase", "model", "images", "masks/img", "clicks/mask", "sec/mask",
                "prefill accepted", "auto precision", "wall s"):
        table.add_column(col, justify="right" if col not in ("phase", "model") else "left")
    for phase in report["phases"]:
        table.add_row(
            phase["name"], _fmt(phase.get("model_version")), _fmt(phase.get("images")),
            _fmt(phase.get("masks_per_image")), _fmt(phase.get("clicks_per_mask")),
            _fmt(phase.get("seconds_per_mask"), 1), _fmt(phase.get("prefill_accept_share")),
            _fmt(phase.get("automatic_precision")), _fmt(phase.get("wall_seconds"), 0),
        )
    console.print(table)
    models = Table(title="Held-out interactive evaluation per model version (robot clicker, ONNX decoder)")
    for col in ("model", "after", "NoC@85", "NoC@90", "NoF@90", "mIoU@1", "mIoU@3", "mIoU@5", "images"):
        models.add_column(col)
    for m in report["models"]:
        models.add_row(
            _fmt(m["model_version"]), m["label"], _fmt(m["noc85"]), _fmt(m["noc90"]), _fmt(m["nof90"]),
            _fmt(m["miou1"], 3), _fmt(m["miou3"], 3), _fmt(m["miou5"], 3), _fmt(m["images"]),
        )
    console.print(models)
    for line in report.get("verdicts", []):
        console.print(line)


def write_report(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "simulation.json"
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(json_path)
    png_path = out_dir / "simulation.png"
    _plot(report, png_path)
    return json_path, png_path


def _plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    phases = [p for p in report["phases"] if p.get("clicks_per_mask") is not None]
    names = [p["name"] for p in phases]
    axes[0].bar(names, [p["clicks_per_mask"] for p in phases], color="#4c72b0")
    axes[0].set_title("clicks per mask")
    axes[1].bar(names, [p["seconds_per_mask"] for p in phases], color="#55a868")
    axes[1].set_title("simulated seconds per mask")
    for ax in axes[:2]:
        ax.tick_params(axis="x", rotation=20)
    for m in report["models"]:
        curve = m.get("miou_curve") or []
        axes[2].plot(range(1, len(curve) + 1), curve, marker="o", ms=3, label=f"v{m['model_version']} ({m['label']})")
    axes[2].set_title("held-out mIoU vs clicks")
    axes[2].set_xlabel("clicks")
    axes[2].set_ylim(0, 1)
    axes[2].grid(alpha=0.3)
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
