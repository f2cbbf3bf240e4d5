"""The interactive evaluation harness (protocol of ``docs/evaluation.md``).

Any segmenter with ``set_image(image)`` and ``predict(point_coords, point_labels, mask_input=...,
multimask_output=...) -> (masks K×H×W, scores K, low_res_logits K×256×256 | None)`` can be
evaluated: a ``SamPredictor`` or the ``GrabCutSegmenter`` baseline. The first click is decoded with
three candidate masks and the one with the highest predicted IoU is kept; later clicks ask for a
single mask and feed back the previous low-resolution logits (when the segmenter returns them).
"""
from __future__ import annotations

import logging
import platform
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from workers.evaluation.clicker import iou, next_click, split_ground_truth
from workers.evaluation.metrics import summarize

logger = logging.getLogger(__name__)

PROTOCOL = ("robot clicker (interior-most point of the larger error, padded EDT, row-major ties), "
            "first click multimask best predicted IoU, later clicks single mask + previous low-res logits, "
            "threshold logit 0 at original resolution, ignore label 128")


class InteractiveSegmenter(Protocol):
    def set_image(self, image: np.ndarray) -> None: ...

    def predict(self, point_coords: np.ndarray | None = None, point_labels: np.ndarray | None = None,
                box: np.ndarray | None = None, mask_input: np.ndarray | None = None,
                multimask_output: bool = True, return_logits: bool = False) -> tuple: ...


@dataclass
class SampleResult:
    """IoU after each click, the clicks (x, y, label), and timings of one sample."""

    name: str
    ious: list[float]
    clicks: list[tuple[int, int, int]] = field(default_factory=list)
    click_seconds: list[float] = field(default_factory=list)
    encode_seconds: float = 0.0


def run_sample(segmenter: InteractiveSegmenter, image: np.ndarray, gt_mask: np.ndarray, *, max_clicks: int = 20,
               name: str = "") -> SampleResult:
    """Evaluate one object: ``image`` H×W×3 uint8 RGB, ``gt_mask`` H×W uint8 (0/255, 128 ignore)."""
    if image.shape[:2] != gt_mask.shape:
        raise ValueError(f"{name or 'sample'}: image {image.shape[:2]} and mask {gt_mask.shape} differ in size")
    fg, ignore = split_ground_truth(gt_mask)
    if not fg.any():
        raise ValueError(f"{name or 'sample'}: the ground-truth mask is empty")
    t0 = time.perf_counter()
    segmenter.set_image(image)
    result = SampleResult(name=name, ious=[], encode_seconds=time.perf_counter() - t0)
    pred = np.zeros(fg.shape, dtype=bool)
    clicked = np.zeros(fg.shape, dtype=bool)
    coords: list[list[float]] = []
    labels: list[int] = []
    prev_logits: np.ndarray | None = None
    for k in range(max_clicks):
        click = next_click(fg, pred, ignore, clicked)
        if click is None:  # nothing left to correct: the prediction stays
            result.ious.append(iou(fg, pred, ignore))
            continue
        clicked[click.y, click.x] = True
        coords.append([float(click.x), float(click.y)])
        labels.append(click.label)
        result.clicks.append((click.x, click.y, click.label))
        t = time.perf_counter()
        first = k == 0
        masks, scores, low_res = segmenter.predict(
            point_coords=np.array(coords, dtype=np.float32), point_labels=np.array(labels, dtype=np.int64),
            mask_input=None if first or prev_logits is None else prev_logits[None],
            multimask_output=first)
        result.click_seconds.append(time.perf_counter() - t)
        choose = getattr(segmenter, "choose", None)  # a refining predictor ranks refined candidates
        best = (choose(scores) if choose is not None else int(np.argmax(scores))) if first else 0
        pred = np.asarray(masks[best]).astype(bool)
        prev_logits = None if low_res is None else np.asarray(low_res[best], dtype=np.float32)
        result.ious.append(iou(fg, pred, ignore))
    return result


def evaluate(segmenter: InteractiveSegmenter, samples: Iterable[tuple[str, np.ndarray, np.ndarray]], *,
             max_clicks: int = 20, progress: bool = False, total: int | None = None) -> dict[str, Any]:
    """Run the protocol over ``(name, image, gt_mask)`` samples; return metrics and per-sample curves."""
    results: list[SampleResult] = []
    iterator: Iterable = samples
    if progress:
        from tqdm import tqdm

        iterator = tqdm(samples, total=total, desc=getattr(segmenter, "name", type(segmenter).__name__),
                        unit="img", dynamic_ncols=True)
    for name, image, gt in iterator:
        results.append(run_sample(segmenter, image, gt, max_clicks=max_clicks, name=name))
    if not results:
        raise ValueError("no samples to evaluate")
    summary = summarize([r.ious for r in results], max_clicks)
    click_times = [s for r in results for s in r.click_seconds]
    summary.update({
        "seconds_per_click": float(np.mean(click_times)) if click_times else 0.0,
        "encoder_seconds_per_image": float(np.mean([r.encode_seconds for r in results])),
        "max_clicks": max_clicks,
        "protocol": PROTOCOL,
        "segmenter": type(segmenter).__name__,
        "machine": machine_description(),
        "per_sample": [{"name": r.name, "ious": [round(v, 5) for v in r.ious], "clicks": r.clicks}
                       for r in results],
    })
    return summary


def machine_description() -> str:
    """A short description of the machine the numbers were measured on."""
    import os

    threads = ""
    try:
        import torch

        threads = f", torch threads {torch.get_num_threads()}"
    except ImportError:
        pass
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs{threads}, {platform.system()}"


def iter_dataset_samples(dataset_dir: str | Path, names: list[str] | None = None, *, skip_bad: bool = False,
                         max_images: int | None = None) -> tuple[int, Iterator[tuple[str, np.ndarray, np.ndarray]]]:
    """(number of objects, iterator of (name, image, mask)) over a validated dataset directory.

    ``max_images`` keeps that many images, evenly spaced over the sorted names.
    """
    from workers.training.data import read_image, read_mask, scan_dataset

    found = scan_dataset(dataset_dir, names, skip_bad=skip_bad)
    if max_images is not None and max_images < len(found):
        # evenly spaced over the sorted names, so a subset still spans every category
        picks = np.linspace(0, len(found) - 1, max_images).round().astype(int)
        found = [found[i] for i in sorted(set(picks.tolist()))]
    count = sum(len(s.mask_paths) for s in found)

    def generate() -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        for sample in found:
            image = read_image(sample.image_path)
            for mask_path in sample.mask_paths:
                label = sample.name if len(sample.mask_paths) == 1 else f"{sample.name}/{mask_path.stem}"
                yield label, image, read_mask(mask_path)

    return count, generate()


def load_predictor(model_or_checkpoint: Any, device: str = "cpu", decoder: str = "auto") -> InteractiveSegmenter:
    """A predictor for a model object, a checkpoint path, or 'default'.

    ``decoder``: ``"torch"`` gives a ``SamPredictor``; ``"onnx"`` an ``OnnxPredictor`` (torch encoder,
    the browser's exported decoders in onnxruntime); ``"auto"`` picks onnx on a CPU.
    """
    from workers.sam import SamPredictor, build_sam
    from workers.sam.onnx import OnnxPredictor, resolve_decoder

    decoder = resolve_decoder(decoder, device)  # checked before a checkpoint is loaded
    model = model_or_checkpoint
    if isinstance(model_or_checkpoint, (str, Path)):
        spec = str(model_or_checkpoint)
        if spec != "default" and not Path(spec).is_file():
            raise ValueError(f"model checkpoint not found: {spec}")
        # build_sam reads the arch recorded in a Maskloop checkpoint ('default' = the shipped model)
        model = build_sam("default") if spec == "default" else build_sam(None, checkpoint=spec, device=device)
    model = model.to(device).eval()
    predictor: Any = OnnxPredictor(model) if decoder == "onnx" else SamPredictor(model)
    predictor.name = "model"
    return predictor


def evaluate_model(model_or_checkpoint: Any, dataset_dir: str | Path, names: list[str] | None = None,
                   max_clicks: int = 20, max_images: int | None = None, *, progress: bool = False,
                   skip_bad: bool = False, decoder: str = "auto", refine: Any = None) -> dict[str, Any]:
    """Evaluate a model (object, checkpoint path or 'default') on a dataset directory (or a subset).

    ``decoder`` as in ``load_predictor`` (default: onnxruntime on a CPU, as the browser decodes).
    ``refine``: a ``RefineParams`` for the masks (default: the installation's, ``MASKLOOP_MASK_REFINE``,
    which is what the browser applies), so the numbers describe the masks annotators get.
    """
    import torch

    from backend.services.mask_refine import configured_refine, refine_predictor

    params = configured_refine() if refine is None else refine
    predictor = refine_predictor(load_predictor(model_or_checkpoint, decoder=decoder), params)
    count, samples = iter_dataset_samples(dataset_dir, names, skip_bad=skip_bad, max_images=max_images)
    with torch.inference_mode():
        result = evaluate(predictor, samples, max_clicks=max_clicks, progress=progress, total=count)
    result["refine"] = params.to_dict()
    return result
