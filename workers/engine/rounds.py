"""Orchestration of one retraining round, independent of Celery and the database.

Layout of a round directory (``storage/rounds/<id>/``)::

    train/images/NAME.png, train/masks/NAME/<k>.png     the snapshot's training split
    heldout/images/..., heldout/masks/...               the fixed held-out split
    run/ckpt_<step>.pt, run/model.pt                    training checkpoints (resume point)
    model_head.pt                                       run/model.pt with its IoU head refitted (the
                                                        new model where the refit is kept)
    metrics_before.json, metrics_after.json             evaluations (cached across restarts)
    decoder.onnx                                        exported decoder of the new model

Every step writes atomically and is skipped when its output already exists, so calling
``run_round`` again after a killed worker resumes training from the newest checkpoint.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from backend.core.files import atomic_write
from workers.engine.errors import BadInputError

logger = logging.getLogger(__name__)

HELDOUT_PERCENT = 20
#: the fewest training images a round refits the IoU head on: one image in ten is held out to judge the
#: refit, and on a few held-out images that judgement is noise (a 30-mask round judged it on 2 images,
#: kept a head that halved the held-out IoU after one click: 0.365 -> 0.155; runs/sim_window, 2026-12-04)
HEAD_MIN_IMAGES = 100


@dataclass
class Sample:
    """One image of the snapshot: ``name`` (file stem), ``image`` H×W×3 uint8, ``masks`` as COCO RLEs."""

    name: str
    sha256: str
    image: np.ndarray
    masks: list[dict[str, Any]]


@dataclass
class RoundOutput:
    model_path: Path
    decoder_path: Path
    metrics_before: dict[str, Any]
    metrics_after: dict[str, Any]
    resumed_from_step: int
    n_train_images: int
    n_heldout_images: int
    iou_head_fit: dict[str, Any] | None = None


def is_heldout(sha256: str, percent: int = HELDOUT_PERCENT) -> bool:
    """A fixed split by image content: the same image is held out in every round."""
    return int(hashlib.sha256(sha256.encode()).hexdigest()[:8], 16) % 100 < percent


def split_samples(samples: Iterable[Sample], percent: int = HELDOUT_PERCENT) -> tuple[list[Sample], list[Sample]]:
    """(train, heldout). With one image only, it is used for both so the round can run."""
    samples = list(samples)
    train = [s for s in samples if not is_heldout(s.sha256, percent)]
    heldout = [s for s in samples if is_heldout(s.sha256, percent)]
    if not heldout and train:
        heldout = [train.pop()] if len(train) > 1 else list(train)
    if not train and heldout:
        train = [heldout.pop()] if len(heldout) > 1 else list(heldout)
    return train, heldout


def write_dataset(samples: list[Sample], out_dir: Path) -> Path:
    """Write ``samples`` in the training layout; atomic (a temp folder renamed into place)."""
    import cv2
    from pycocotools import mask as mask_utils

    out_dir = Path(out_dir)
    if out_dir.is_dir():
        return out_dir
    tmp = out_dir.with_name(f".{out_dir.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        (tmp / "images").mkdir(parents=True)
        for s in samples:
            cv2.imwrite(str(tmp / "images" / f"{s.name}.png"), cv2.cvtColor(s.image, cv2.COLOR_RGB2BGR))
            mdir = tmp / "masks" / s.name
            mdir.mkdir(parents=True)
            for k, rle in enumerate(s.masks):
                counts = rle["counts"]
                m = mask_utils.decode({"size": list(rle["size"]),
                                       "counts": counts.encode("ascii") if isinstance(counts, str) else counts})
                if m.shape[:2] != s.image.shape[:2]:
                    raise BadInputError(f"image {s.name}: mask size {m.shape[:2]} differs from image {s.image.shape[:2]}")
                cv2.imwrite(str(mdir / f"{k}.png"), (m.astype(np.uint8) * 255))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    os.replace(tmp, out_dir)
    return out_dir


def _cached_json(path: Path, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    if path.is_file():
        return json.loads(path.read_text())
    value = compute()
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(value)))
    return value


def _slim(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if k != "per_sample"}


# the parts of the base model's training recipe a round keeps (name -> type)
INHERITED_RECIPE = {"focal_weight": float, "dice_weight": float, "iters_per_sample": int, "box_prob": float,
                    "warm_clicks": int, "warm_prob": float}


def inherited_recipe(checkpoint: Path) -> dict[str, float | int]:
    """The prompt-simulation and loss settings of the training config stored in ``checkpoint``'s meta.

    A model trained with one recipe and fine-tuned with another drifts towards the new one first
    (a focal:dice balance of 20:1 instead of the shipped default's 1:1, or sessions of 3 points
    instead of the warm-up clicks' 13): a round keeps its base model's recipe (see ``INHERITED_RECIPE``).
    An official checkpoint (a bare state_dict) or an unreadable one has nothing to inherit.
    """
    from workers.sam.build import read_checkpoint

    try:
        meta = read_checkpoint(checkpoint)[2]
    except (FileNotFoundError, ValueError) as exc:  # the round's training then reports the file itself
        logger.warning("cannot read the training config of %s: %s", checkpoint, exc)
        return {}
    config = meta.get("config") or meta.get("train_config") or {}
    return {k: kind(config[k]) for k, kind in INHERITED_RECIPE.items()
            if isinstance(config.get(k), (int, float)) and not isinstance(config.get(k), bool)}


def run_round(round_dir: Path, samples: list[Sample], *, base_checkpoint: Path, arch: str, steps: int,
              lr: float = 1e-4, batch_size: int = 1, freeze_image_encoder: bool = True, image_size: int = 1024,
              checkpoint_every: int = 10, max_clicks: int = 20, device: str = "cpu",
              on_progress: Callable[[float, str], None] | None = None,
              step_delay_s: float = 0.0, time_budget_s: float | None = None,
              train_overrides: dict[str, Any] | None = None, refit_head: bool = True,
              head_min_images: int = HEAD_MIN_IMAGES) -> RoundOutput:
    """Fine-tune ``base_checkpoint`` on the snapshot, evaluate before/after, export the decoder.

    ``on_progress(fraction, message)`` is called during training (fraction of the whole round).
    ``step_delay_s`` sleeps after each training step (a test hook to make a round slow enough to
    kill a worker in the middle; 0 in production). ``refit_head`` refits the IoU head on the
    training split after training (``workers.training.iou_head``, on the IoUs of the refined candidates),
    which is what ranks a click's candidates and gates prefill. The refit needs ``head_min_images``
    training images, and the refitted head is kept only when, on the held-out tenth of them, it lowers
    the error without lowering the IoU of the candidate it shows first; otherwise the trained model
    keeps the base model's head (the report says why, ``kept`` false).
    """
    from workers.evaluation import evaluate_model
    from workers.training import TrainConfig, train

    if not samples or not any(s.masks for s in samples):
        raise BadInputError("the round's snapshot has no annotations to train on")
    if steps < 1:
        raise BadInputError(f"steps must be >= 1, got {steps}")
    if head_min_images < 2:
        raise BadInputError(f"iou_head_min_images must be >= 2, got {head_min_images}")
    round_dir = Path(round_dir)
    round_dir.mkdir(parents=True, exist_ok=True)
    report = on_progress or (lambda fraction, message: None)
    train_s, heldout_s = split_samples([s for s in samples if s.masks])
    train_dir = write_dataset(train_s, round_dir / "train")
    heldout_dir = write_dataset(heldout_s, round_dir / "heldout")

    report(0.02, "evaluating the current model on the held-out split")
    before = _cached_json(round_dir / "metrics_before.json",
                          lambda: _slim(evaluate_model(str(base_checkpoint), heldout_dir, max_clicks=max_clicks)))

    # fine-tune with the recipe the base model was trained with, unless the round says otherwise
    overrides = {**inherited_recipe(base_checkpoint), **(train_overrides or {})}
    cfg = TrainConfig(arch=arch, dataset_dir=str(train_dir), out_dir=str(round_dir / "run"),
                      init_checkpoint=str(base_checkpoint), steps=steps, batch_size=batch_size, lr=lr,
                      freeze_image_encoder=freeze_image_encoder, checkpoint_every=checkpoint_every,
                      image_size=image_size, device=device, progress_bar=False, time_budget_s=time_budget_s,
                      warmup=min(10, max(0, steps // 10)), **overrides)

    def on_step(fraction: float, metrics: dict[str, Any]) -> None:
        report(0.05 + 0.8 * fraction, f"training step {metrics.get('step', '?')}/{steps}")
        if step_delay_s > 0:
            time.sleep(step_delay_s)

    result = train(cfg, on_progress=on_step)
    model_path = Path(result.model_path)
    head_report: dict[str, Any] | None = None
    headed = round_dir / "model_head.pt"
    if refit_head and len(train_s) < head_min_images:
        head_report = {"kept": False, "reason": f"{len(train_s)} training images; the IoU head is refitted "
                                                f"from {head_min_images} on"}
    elif refit_head:
        if headed.is_file():  # cached: a resumed round does not refit twice
            from workers.sam.build import read_checkpoint

            fit = read_checkpoint(headed)[2]["iou_head_fit"]
        else:
            report(0.85, "refitting the IoU head")
            from backend.services.mask_refine import configured_refine
            from workers.training.data import scan_dataset
            from workers.training.iou_head import refit_checkpoint

            # the head ranks a click's candidates by what annotators see: the installation's refined masks
            fit = refit_checkpoint(model_path, scan_dataset(train_dir), headed, heldout_every=min(10, len(train_s)),
                                   describe={"dataset": "the round's training split"}, device=device,
                                   refine=configured_refine())
        head_report = {k: fit[k] for k in ("heldout_before", "heldout_after", "train_prompts", "best_epoch")}
        head_report.update(head_verdict(fit["heldout_before"], fit["heldout_after"]))
        if head_report["kept"]:
            model_path = headed
    report(0.87, "evaluating the new model on the held-out split")
    after = _cached_json(round_dir / "metrics_after.json",
                         lambda: _slim(evaluate_model(str(model_path), heldout_dir, max_clicks=max_clicks)))

    report(0.95, "exporting the ONNX decoder")
    decoder_path = round_dir / "decoder.onnx"
    if not decoder_path.is_file():
        export_decoder(model_path, arch, decoder_path)
    return RoundOutput(model_path, decoder_path, before, after, result.resumed_from_step,
                       len(train_s), len(heldout_s), head_report)


def head_verdict(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Whether a refitted IoU head is kept, from its held-out metrics before and after the refit
    (``workers.training.iou_head.head_metrics``): its error must fall and the IoU of the candidate it
    shows first must not."""
    if not after["mse"] < before["mse"]:
        return {"kept": False, "reason": "the refit did not lower the held-out error"}
    if after["chosen_iou"] < before["chosen_iou"]:
        return {"kept": False, "reason": f"the refit lowered the held-out IoU of the candidate shown first "
                                         f"({before['chosen_iou']:.3f} -> {after['chosen_iou']:.3f})"}
    return {"kept": True}


def export_decoder(checkpoint: Path, arch: str, out_path: Path) -> None:
    """Export the single-mask ONNX decoder of ``checkpoint`` to ``out_path`` atomically."""
    from workers.sam import build_sam
    from workers.sam.onnx import export_onnx_decoder

    model = build_sam(arch, checkpoint=str(checkpoint)).eval()
    export_onnx_decoder(model, out_path, return_single_mask=True)  # written atomically
