"""`maskloop simulate`: robot annotators drive a running Maskloop through the data engine loop."""
from __future__ import annotations

import logging
from pathlib import Path

import typer


def simulate(
    dataset: Path = typer.Option(..., "--dataset", help="Folder with images/ and masks/ (e.g. coco-mval)."),
    rounds: int = typer.Option(2, help="Retraining rounds (round 1 after stage 1, round 2 after stage 2)."),
    url: str = typer.Option("http://127.0.0.1:8000", help="Base URL of a running Maskloop."),
    username: str = typer.Option("admin", envvar="MASKLOOP_ADMIN_USERNAME", help="Admin user name."),
    password: str = typer.Option(..., envvar="MASKLOOP_ADMIN_PASSWORD", help="Admin password."),
    stage1: int = typer.Option(40, help="Images annotated in stage 1 (assisted-manual)."),
    stage2: int = typer.Option(20, help="Images annotated in stage 2 (semi-automatic)."),
    stage3: int = typer.Option(10, help="Images segmented in stage 3 (fully automatic)."),
    heldout: int = typer.Option(40, help="Validation images used for the held-out evaluation."),
    annotators: int = typer.Option(2, help="Robot annotators working in parallel."),
    iou_target: float = typer.Option(0.85, help="A robot accepts a mask once its IoU reaches this."),
    max_clicks: int = typer.Option(20, help="Click budget per mask."),
    heldout_clicks: int = typer.Option(20, help="Clicks per held-out sample (the protocol uses 20)."),
    points_per_side: int = typer.Option(32, help="Point grid of the prefill and automatic jobs."),
    pred_iou_thresh: float = typer.Option(-1.0, help="Predicted-IoU filter of the prefill and automatic jobs "
                                          "(-1: the server's default)."),
    stability_thresh: float = typer.Option(-1.0, help="Stability-score filter of the prefill and automatic jobs "
                                           "(-1: the server's default)."),
    round_steps: int = typer.Option(0, help="Training steps per round (0: the server's default)."),
    round_lr: float = typer.Option(0.0, help="Learning rate of each round (0: the server's default)."),
    round_train_encoder: bool = typer.Option(False, help="Also train the image encoder in the rounds "
                                             "(the server's default freezes it)."),
    out: Path = typer.Option(Path("artifacts/simulation"), help="Where the JSON report and PNG chart go."),
    seed: int = typer.Option(0, help="Seed of the image order."),
) -> None:
    """Run robot annotators through all three stages and the retraining rounds; print the table."""
    from rich.console import Console

    from workers.simulation.engine_loop import Simulation, SimulationConfig
    from workers.simulation.report import print_report, write_report

    console = Console()
    if not (dataset / "images").is_dir() or not (dataset / "masks").is_dir():
        console.print(f"[red]error:[/red] {dataset} must contain images/ and masks/ folders")
        raise typer.Exit(2)
    if rounds < 1:
        console.print("[red]error:[/red] --rounds must be at least 1")
        raise typer.Exit(2)
    if pred_iou_thresh > 1.5 or stability_thresh > 1:
        console.print("[red]error:[/red] --pred-iou-thresh must be at most 1.5 and --stability-thresh at most 1")
        raise typer.Exit(2)
    if round_lr < 0 or round_lr > 1:
        console.print("[red]error:[/red] --round-lr must be between 0 and 1")
        raise typer.Exit(2)
    logging.basicConfig(level=logging.WARNING)
    cfg = SimulationConfig(
        base_url=url, username=username, password=password, dataset_dir=dataset, out_dir=out,
        rounds=rounds, stage_images=(stage1, stage2, stage3), heldout_images=heldout,
        annotators=annotators, iou_target=iou_target, max_clicks=max_clicks, heldout_max_clicks=heldout_clicks,
        round_steps=round_steps or None, seed=seed, points_per_side=points_per_side,
        round_lr=round_lr or None, round_train_encoder=round_train_encoder,
        pred_iou_thresh=None if pred_iou_thresh < 0 else pred_iou_thresh,
        stability_score_thresh=None if stability_thresh < 0 else stability_thresh,
    )
    sim = Simulation(cfg, progress=lambda msg: console.print(f"[dim]{msg}[/dim]"))
    try:
        report = sim.run()
    except (ValueError, RuntimeError, TimeoutError) as exc:
        console.print(f"[red]simulation failed:[/red] {exc}")
        raise typer.Exit(1) from exc
    print_report(report, console)
    json_path, png_path = write_report(report, out)
    console.print(f"report: {json_path}  chart: {png_path}")


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate)
