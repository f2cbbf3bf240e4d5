"""`maskloop simulate`: robot annotators drive a running Maskloop through the data engine loop."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from rich.console import Console


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
    annotate_split: str = typer.Option("train", help="Split the stages' images come from: train, or val (the "
                                       "validation images not held out; new to a model trained on train)."),
    annotators: int = typer.Option(2, help="Robot annotators working in parallel."),
    iou_target: float = typer.Option(0.85, help="A robot accepts a mask once its IoU reaches this."),
    max_clicks: int = typer.Option(20, help="Click budget per mask."),
    heldout_clicks: int = typer.Option(20, help="Clicks per held-out sample (the protocol uses 20)."),
    points_per_side: int = typer.Option(32, help="Point grid of the prefill and automatic jobs."),
    pred_iou_thresh: float | None = typer.Option(None, help="Predicted-IoU filter of the prefill and automatic "
                                                 "jobs (default: the server's)."),
    stability_thresh: float | None = typer.Option(None, help="Stability-score filter of the prefill and automatic "
                                                  "jobs (default: the server's)."),
    round_steps: int = typer.Option(0, help="Training steps per round (0: the server's default)."),
    round_lr: float | None = typer.Option(None, help="Learning rate of each round (default: the server's)."),
    round_train_encoder: bool = typer.Option(False, help="Also train the image encoder in the rounds "
                                             "(the server's default freezes it)."),
    out: Path = typer.Option(Path("artifacts/simulation"), help="Where the JSON report and PNG chart go."),
    seed: int = typer.Option(0, help="Seed of the image order."),
) -> None:
    """Run robot annotators through all three stages and the retraining rounds; print the table."""
    import httpx
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
    if annotate_split not in ("train", "val"):
        console.print(f"[red]error:[/red] --annotate-split must be train or val, got {annotate_split!r}")
        raise typer.Exit(2)
    if min(stage1, stage2, stage3, heldout) < 0 or stage1 < 1 or heldout < 1:
        console.print("[red]error:[/red] --stage1 and --heldout must be at least 1, --stage2 and --stage3 at least 0")
        raise typer.Exit(2)
    if min(annotators, max_clicks, heldout_clicks) < 1 or not 0 < iou_target <= 1:
        console.print("[red]error:[/red] --annotators, --max-clicks and --heldout-clicks must be at least 1, "
                      "--iou-target in (0, 1]")
        raise typer.Exit(2)
    _check_with_api_models(console, pred_iou_thresh, stability_thresh, round_lr, points_per_side, round_steps)
    logging.basicConfig(level=logging.WARNING)
    cfg = SimulationConfig(
        base_url=url, username=username, password=password, dataset_dir=dataset, out_dir=out,
        rounds=rounds, stage_images=(stage1, stage2, stage3), heldout_images=heldout,
        annotators=annotators, iou_target=iou_target, max_clicks=max_clicks, heldout_max_clicks=heldout_clicks,
        round_steps=round_steps or None, seed=seed, points_per_side=points_per_side,
        round_lr=round_lr, round_train_encoder=round_train_encoder,
        pred_iou_thresh=pred_iou_thresh, stability_score_thresh=stability_thresh, annotate_split=annotate_split,
    )
    try:
        report = Simulation(cfg, progress=lambda msg: console.print(f"[dim]{msg}[/dim]")).run()
    except (httpx.TransportError, httpx.InvalidURL) as exc:  # no server at --url, a malformed --url, a lost link
        console.print(f"[red]error:[/red] cannot reach Maskloop at {url}: {exc}")
        raise typer.Exit(1) from None
    except (ValueError, RuntimeError, TimeoutError) as exc:
        console.print(f"[red]simulation failed:[/red] {exc}")
        raise typer.Exit(1) from exc
    print_report(report, console)
    json_path, png_path = write_report(report, out)
    console.print(f"report: {json_path}  chart: {png_path}")


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate)


def _check_with_api_models(console: Console, pred_iou_thresh: float | None, stability_thresh: float | None,
                           round_lr: float | None, points_per_side: int, round_steps: int) -> None:
    """Judge the options that go into API requests with the API's own request models, so that a bad value
    stops the command before a long run starts instead of failing with a 422 halfway through."""
    from pydantic import ValidationError

    from backend.schemas.engine import JobCreate, RoundCreate

    for option, request in (("--pred-iou-thresh", lambda: JobCreate(pred_iou_thresh=pred_iou_thresh)),
                            ("--stability-thresh", lambda: JobCreate(stability_score_thresh=stability_thresh)),
                            ("--points-per-side", lambda: JobCreate(points_per_side=points_per_side)),
                            ("--round-steps", lambda: RoundCreate(steps=round_steps or None)),
                            ("--round-lr", lambda: RoundCreate(learning_rate=round_lr))):
        try:
            request()
        except ValidationError as exc:
            console.print(f"[red]error:[/red] {option}: {exc.errors()[0]['msg']}")
            raise typer.Exit(2) from None
