"""``maskloop train``, ``maskloop eval``, ``maskloop fit-iou-head`` and ``maskloop export-decoder``.

torch and everything under ``workers/`` are imported inside the command functions, so the API
process (which imports ``backend.cli``) never loads torch. Bad input (missing dataset, bad files,
unknown model) prints one line naming the problem and exits with code 2, without a traceback.
"""
from __future__ import annotations

import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Optional

import typer

logger = logging.getLogger(__name__)


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _setup(threads: Optional[int]) -> None:
    if threads is not None and threads < 1:
        _fail(f"--threads must be >= 1, got {threads}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if threads:
        import torch

        torch.set_num_threads(threads)


def _out_dir(out: Path) -> None:
    """Create the --out folder now, so that a bad one fails before any compute is spent."""
    if out.exists() and not out.is_dir():
        _fail(f"--out {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _fail(f"cannot create the --out folder {out}: {exc.strerror or exc}")


def _out_file(out: Path) -> None:
    """Check that the --out file can be written (its folder is created) before any compute is spent."""
    if out.is_dir():
        _fail(f"--out {out} is a folder; expected a file name")
    blocking = next((parent for parent in out.parents if parent.exists() and not parent.is_dir()), None)
    if blocking is not None:
        _fail(f"--out {out}: {blocking} is a file, not a folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _fail(f"cannot create the folder of --out {out}: {exc.strerror or exc}")


def _split_names(dataset: Path, split: str) -> Optional[list[str]]:
    from workers.training.data import names_for_split

    return names_for_split(dataset, split)


def train_command(
    dataset: Path = typer.Option(..., "--dataset", help="Dataset folder with images/ and masks/."),
    out: Path = typer.Option(..., "--out", help="Run folder: checkpoints, metrics.jsonl, model.pt."),
    arch: str = typer.Option("lite_clicks", "--arch",
                             help="Model architecture (lite_clicks, lite, vit_t, vit_b, ...)."),
    split: str = typer.Option("all", "--split", help="train, val or all (coco-style names split by category)."),
    steps: int = typer.Option(1000, "--steps", help="Optimizer steps."),
    time_budget_min: Optional[float] = typer.Option(None, "--time-budget-min", help="Stop after this many minutes "
                                                    "of training; the learning rate decays to fit."),
    batch_size: int = typer.Option(2, "--batch-size", help="Images per step."),
    lr: float = typer.Option(8e-4, "--lr", help="Peak learning rate."),
    warmup: int = typer.Option(50, "--warmup", help="Linear warm-up steps."),
    decay: str = typer.Option("cosine", "--decay", help="cosine, step or none."),
    weight_decay: float = typer.Option(0.1, "--weight-decay"),
    iters_per_sample: int = typer.Option(4, "--iters", help="Simulated interaction iterations per mask."),
    box_prob: float = typer.Option(0.5, "--box-prob", help="Probability that the first prompt is a box."),
    warm_clicks: int = typer.Option(0, "--warm-clicks", help="Up to this many corrective clicks run without "
                                    "gradients before the trained iterations, so the model learns long sessions "
                                    "(0 = off)."),
    warm_prob: float = typer.Option(0.5, "--warm-prob", help="Share of sessions that get the --warm-clicks start."),
    focal_weight: float = typer.Option(20.0, "--focal-weight", help="Weight of the focal term (paper: 20)."),
    dice_weight: float = typer.Option(1.0, "--dice-weight", help="Weight of the dice term (paper: 1)."),
    init: Optional[Path] = typer.Option(None, "--init", help="Start from this checkpoint (fine-tuning)."),
    freeze_image_encoder: bool = typer.Option(False, "--freeze-image-encoder", help="Train only prompt encoder "
                                              "and decoder."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip bad samples with a warning instead of failing."),
    no_augment: bool = typer.Option(False, "--no-augment", help="Disable augmentation and copy-paste."),
    checkpoint_every: int = typer.Option(100, "--checkpoint-every"),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads."),
    num_workers: int = typer.Option(0, "--num-workers", min=0, help="Background processes that load and augment "
                                    "the images (0: in the training process); same samples either way."),
) -> None:
    """Train or fine-tune a model; rerun the same command to resume after an interruption.

    For data-parallel training over several processes (GPUs), see ``python -m workers.training``."""
    _setup(threads)
    from workers.training import TrainConfig, train
    from workers.training.data import DatasetError

    if init is not None and not init.is_file():
        _fail(f"--init checkpoint not found: {init}")
    import torch

    try:
        kind = torch.device(device).type
    except RuntimeError:
        kind = None
    if kind not in ("cpu", "cuda"):
        _fail(f"unknown --device {device!r}: expected cpu or cuda")
    if kind == "cuda" and not torch.cuda.is_available():
        _fail(f"--device {device}: CUDA is not available on this machine (torch {torch.__version__})")
    try:
        names = _split_names(dataset, split)
        cfg = TrainConfig(arch=arch, dataset_dir=str(dataset), out_dir=str(out), names=names, steps=steps,
                          time_budget_s=time_budget_min * 60 if time_budget_min is not None else None,
                          batch_size=batch_size, lr=lr, warmup=warmup, decay=decay, weight_decay=weight_decay,
                          iters_per_sample=iters_per_sample, box_prob=box_prob, warm_clicks=warm_clicks,
                          warm_prob=warm_prob,
                          init_checkpoint=str(init) if init else None,
                          freeze_image_encoder=freeze_image_encoder, skip_bad=skip_bad, augment=not no_augment,
                          checkpoint_every=checkpoint_every, seed=seed, device=device, num_threads=threads,
                          num_workers=num_workers,
                          focal_weight=focal_weight, dice_weight=dice_weight)
        cfg.validate()
        _out_dir(out)
        result = train(cfg)
    except (DatasetError, ValueError, OSError) as exc:
        _fail(str(exc))
    typer.echo(json.dumps({"model": result.model_path, "steps": result.steps,
                           "resumed_from_step": result.resumed_from_step,
                           "wall_time_s": round(result.wall_time_s, 1), "metrics": result.metrics}, indent=2))


def eval_command(
    dataset: Path = typer.Option(..., "--dataset", help="Dataset folder with images/ and masks/."),
    out: Path = typer.Option(..., "--out", help="Folder for eval.json and eval.png."),
    model: str = typer.Option("default", "--model", help="'default', a checkpoint path, or 'none' "
                              "(baseline only)."),
    split: str = typer.Option("all", "--split", help="train, val or all."),
    baseline: str = typer.Option("grabcut", "--baseline", help="grabcut or none."),
    baseline_report: Optional[Path] = typer.Option(None, "--baseline-report", help="Reuse the GrabCut result of "
                                                   "an earlier eval.json on the same samples."),
    max_clicks: int = typer.Option(20, "--max-clicks"),
    max_images: Optional[int] = typer.Option(None, "--max-images",
                                             help="Evaluate only N images, evenly spaced over the names."),
    skip_bad: bool = typer.Option(False, "--skip-bad"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads."),
    decoder: str = typer.Option("auto", "--decoder", help="auto, torch or onnx: how prompts are decoded "
                                "(auto: the browser's ONNX decoder in onnxruntime on a CPU)."),
    refine: str = typer.Option("auto", "--refine", help="auto, guided, none or both: refine the model's masks "
                               "with the image as the browser does (guided filter); auto follows "
                               "MASKLOOP_MASK_REFINE (default guided); both reports the model with and without it."),
) -> None:
    """Interactive evaluation (robot clicker, NoC@85/90, mIoU curve) of a model beside GrabCut."""
    _setup(threads)
    if baseline not in ("grabcut", "none"):
        _fail(f"unknown baseline {baseline!r}: expected 'grabcut' or 'none'")
    if max_clicks < 1 or (max_images is not None and max_images < 1):
        _fail("--max-clicks and --max-images must be >= 1")
    if model not in ("default", "none") and not Path(model).is_file():
        _fail(f"model checkpoint not found: {model} (--model takes 'default', 'none' or a checkpoint file)")
    if model == "none" and baseline == "none":
        _fail("nothing to evaluate: --model none and --baseline none")
    if decoder not in ("auto", "torch", "onnx"):
        _fail(f"unknown decoder {decoder!r}: expected auto, torch or onnx")
    if refine not in ("auto", "guided", "none", "both"):
        _fail(f"unknown refinement {refine!r}: expected auto, guided, none or both")
    _out_dir(out)
    import torch

    from backend.services.mask_refine import NO_REFINE, RefineParams, configured_refine, refine_predictor
    from workers.evaluation import GrabCutSegmenter, evaluate
    from workers.evaluation.interactive import iter_dataset_samples, load_predictor
    from workers.evaluation.report import headline, plot_miou_curves, write_json_report
    from workers.training.data import DatasetError

    results: dict[str, dict] = {}
    try:
        names = _split_names(dataset, split)
        if model != "none":
            predictor = load_predictor(model, decoder=decoder)
            chosen = configured_refine() if refine == "auto" else RefineParams() if refine != "none" else NO_REFINE
            runs = {"model": chosen}
            if refine == "both":
                runs["model_unrefined"] = NO_REFINE
            for key, params in runs.items():
                count, samples = iter_dataset_samples(dataset, names, skip_bad=skip_bad, max_images=max_images)
                with torch.inference_mode():
                    results[key] = evaluate(refine_predictor(predictor, params), samples, max_clicks=max_clicks,
                                            progress=True, total=count)
                results[key]["refine"] = params.to_dict()
        if baseline == "grabcut" and baseline_report is not None:
            reference = results.get("model")
            if reference is None:  # nothing evaluated: the report must still cover this dataset's samples
                _, samples = iter_dataset_samples(dataset, names, skip_bad=skip_bad, max_images=max_images)
                reference = {"max_clicks": max_clicks, "per_sample": [{"name": name} for name, _, _ in samples]}
            results["grabcut"] = _load_baseline(baseline_report, reference)
        elif baseline == "grabcut":
            count, samples = iter_dataset_samples(dataset, names, skip_bad=skip_bad, max_images=max_images)
            results["grabcut"] = evaluate(GrabCutSegmenter(), samples, max_clicks=max_clicks, progress=True,
                                          total=count)
    except (DatasetError, ValueError, OSError) as exc:
        _fail(str(exc))
    report = {"dataset": str(dataset), "split": split, "model": model, "max_clicks": max_clicks,
              "max_images": max_images, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "results": results}
    try:  # the plot first: eval.json appears only when both are written
        plot_miou_curves(results, out / "eval.png", title=f"{dataset.name} ({split}), {max_clicks} clicks")
        write_json_report(report, out / "eval.json")
    except OSError as exc:
        _fail(f"cannot write the report to {out}: {exc}")
    typer.echo(json.dumps({k: headline(v) for k, v in results.items()}, indent=2))


def _load_baseline(path: Path, model_result: Optional[dict]) -> dict:
    """The GrabCut result of an earlier report, checked to cover the same samples."""
    if not path.is_file():
        raise FileNotFoundError(f"baseline report not found: {path}")
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:  # JSONDecodeError, or UnicodeDecodeError for a binary file
        raise ValueError(f"baseline report {path} is not valid JSON: {exc}") from exc
    found = data.get("results", {}) if isinstance(data, dict) else {}
    result = found.get("grabcut", data) if isinstance(found, dict) else data
    if (not isinstance(result, dict) or not {"miou_curve", "per_sample", "max_clicks", "noc@90"} <= result.keys()
            or not all(isinstance(s, dict) and {"name", "ious"} <= s.keys() for s in result["per_sample"])):
        raise ValueError(f"baseline report {path} holds no GrabCut result")
    if model_result is None:
        return result
    if result.get("max_clicks") != model_result.get("max_clicks"):
        raise ValueError(f"baseline report {path} used {result.get('max_clicks')} clicks, this evaluation "
                         f"{model_result.get('max_clicks')}")
    ours = [s["name"] for s in model_result["per_sample"]]
    by_name = {s["name"]: s for s in result["per_sample"]}
    missing = [n for n in ours if n not in by_name]
    if missing:
        raise ValueError(f"baseline report {path} lacks {len(missing)} of this evaluation's samples "
                         f"(e.g. {missing[0]})")
    if ours == [s["name"] for s in result["per_sample"]]:
        return result
    # the same samples' curves, re-aggregated (timings stay those of the full baseline run)
    from workers.evaluation.metrics import summarize

    chosen = [by_name[n] for n in ours]
    subset = {k: v for k, v in result.items() if k not in ("per_sample", "miou_curve")}
    subset.update(summarize([s["ious"] for s in chosen], len(chosen[0]["ious"])))
    subset["per_sample"] = chosen
    subset["subset_of"] = str(path)
    return subset


def export_decoder_command(
    out: Path = typer.Option(..., "--out", help="Output .onnx file."),
    model: str = typer.Option("default", "--model", help="'default' or a checkpoint path."),
    multimask: bool = typer.Option(False, "--multimask", help="Return all three masks instead of the single "
                                   "best one."),
    opset: int = typer.Option(17, "--opset", min=15, help="ONNX opset (the decoder needs 15 or newer)."),
) -> None:
    """Export the prompt encoder + mask decoder to ONNX (the browser's decoder)."""
    _setup(None)
    if model != "default" and not Path(model).is_file():
        _fail(f"model checkpoint not found: {model} (--model takes 'default' or a checkpoint file)")
    if out.suffix != ".onnx":
        _fail(f"output file must end in .onnx: {out}")
    _out_file(out)
    from workers.evaluation.interactive import load_predictor

    try:
        from workers.sam.onnx import export_onnx_decoder
    except ImportError as exc:
        _fail(f"ONNX export is not available: {exc}", code=1)
    try:
        sam = load_predictor(model, decoder="torch").model
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    try:
        export_onnx_decoder(sam, str(out), return_single_mask=not multimask, opset=opset)
    except RuntimeError as exc:  # torch's exporter: an opset it does not support
        _fail(f"ONNX export with --opset {opset} failed: {str(exc).splitlines()[0]}")
    except OSError as exc:
        _fail(f"cannot write {out}: {exc}")
    typer.echo(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")


def fit_iou_head_command(
    model: Path = typer.Option(..., "--model", help="Trained Maskloop checkpoint (model.pt)."),
    dataset: Path = typer.Option(..., "--dataset", help="Dataset folder with images/ and masks/."),
    out: Path = typer.Option(..., "--out", help="Where to write the checkpoint with the refitted head."),
    split: str = typer.Option("train", "--split", help="train, val or all (coco-style names split by category)."),
    prompts_per_mask: int = typer.Option(4, "--prompts-per-mask", help="Single-point prompts per mask: the "
                                         "evaluation's first click plus uniform points inside the object."),
    epochs: int = typer.Option(200, "--epochs", help="Passes over the recorded features."),
    lr: float = typer.Option(1e-3, "--lr"),
    seed: int = typer.Option(0, "--seed"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip bad samples with a warning instead of failing."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads."),
    targets: str = typer.Option("refined", "--targets", help="refined: the head learns the IoU of each candidate "
                                "after the installation's mask refinement (what annotators see); raw: of the "
                                "decoder's own masks."),
) -> None:
    """Refit the IoU-prediction head of a trained model on its frozen decoder (workers/training/iou_head.py)."""
    _setup(threads)
    if not model.is_file():
        _fail(f"model checkpoint not found: {model}")
    if out.suffix != ".pt":
        _fail(f"output file must end in .pt: {out}")
    if targets not in ("refined", "raw"):
        _fail(f"unknown targets {targets!r}: expected refined or raw")
    if epochs < 1 or prompts_per_mask < 1 or not (math.isfinite(lr) and lr > 0):
        _fail("--epochs and --prompts-per-mask must be >= 1 and --lr a finite number > 0")
    _out_file(out)
    from backend.services.mask_refine import configured_refine
    from workers.training.data import DatasetError, scan_dataset
    from workers.training.iou_head import refit_checkpoint

    try:
        samples = scan_dataset(dataset, _split_names(dataset, split), skip_bad=skip_bad)
        report = refit_checkpoint(model, samples, out, prompts_per_mask=prompts_per_mask, epochs=epochs, lr=lr,
                                  seed=seed, progress_bar=True, describe={"dataset": str(dataset), "split": split},
                                  refine=configured_refine() if targets == "refined" else None)
    except (DatasetError, ValueError, OSError) as exc:
        _fail(str(exc))
    typer.echo(json.dumps({"model": str(out), **report}, indent=2))


def register(app: typer.Typer) -> None:
    """Add the model commands to the ``maskloop`` app."""
    app.command("train")(train_command)
    app.command("eval")(eval_command)
    app.command("export-decoder")(export_decoder_command)
    app.command("fit-iou-head")(fit_iou_head_command)


if __name__ == "__main__":  # pragma: no cover
    _app = typer.Typer()
    register(_app)
    sys.exit(_app())
