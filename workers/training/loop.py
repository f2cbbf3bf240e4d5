"""The training loop: ``train(cfg, on_progress=None) -> TrainResult``, read top to bottom.

One step: draw ``batch_size`` augmented images, encode them in one batch, then for the masks of
each image simulate an interactive session (``prompts.py``) of ``iters_per_sample`` decoder calls,
summing the SAM loss (``losses.py``) over the iterations; AdamW with warm-up and decay, gradient
clipping, bf16 autocast on CUDA. Every ``checkpoint_every`` steps the model, optimizer and step are
written atomically to ``out_dir/ckpt_<step>.pt`` (write to a temporary file, then rename), so a
crash never leaves a half-written file as the latest checkpoint; ``train`` called again with the
same ``out_dir`` resumes from the newest one. Fine-tuning starts from ``init_checkpoint`` and may
freeze the image encoder. Metrics per epoch go to ``out_dir/metrics.jsonl``; the final weights go
to ``out_dir/model.pt`` (Maskloop checkpoint format: ``{"arch", "model", "meta"}``).
"""
from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from backend.core.files import atomic_write
from workers.training.config import TrainConfig, learning_rate
from workers.training.data import AugmentConfig, MaskDataset, PositionDataset, collate_samples, scan_dataset
from workers.training.losses import sam_loss
from workers.training.prompts import LOW_RES, PromptState, add_points, error_points, first_prompts, plan_iterations

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[float, dict[str, Any]], None]
_CKPT_RE = re.compile(r"^ckpt_(\d+)\.pt$")


@dataclass
class TrainResult:
    """What a finished run produced."""

    out_dir: str
    model_path: str
    steps: int
    resumed_from_step: int
    wall_time_s: float
    metrics: dict[str, float] = field(default_factory=dict)


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def list_checkpoints(out_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of the complete training checkpoints in ``out_dir``, oldest first."""
    folder = Path(out_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _CKPT_RE.match(p.name))]
    return sorted(found)


def _build_model(cfg: TrainConfig) -> torch.nn.Module:
    from workers.sam import build_sam
    from workers.sam.build import build_for_finetuning

    return build_for_finetuning(cfg.arch, cfg.init_checkpoint) if cfg.init_checkpoint else build_sam(cfg.arch)


class _Ranks:
    """Data-parallel training over ``world`` processes (``torchrun``), or one process (world 1).

    Every process trains an identical copy of the model on its own share of each step's images; after
    the backward pass the gradients are averaged over the processes (one flat all-reduce through the
    ``gloo`` backend, which works whatever the device and with several processes on one GPU), so the
    copies take identical optimizer steps. Rank 0 alone writes checkpoints, metrics and the model.
    """

    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.owns_group = False
        if self.world > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group("gloo")
                self.owns_group = True

    @property
    def main(self) -> bool:
        return self.rank == 0

    def device(self, name: str) -> torch.device:
        device = torch.device(name)
        if device.type == "cuda" and device.index is None and self.world > 1:
            device = torch.device("cuda", self.local_rank % max(torch.cuda.device_count(), 1))
        return device

    def broadcast_params(self, model: torch.nn.Module) -> None:
        """Start every process from rank 0's weights."""
        if self.world == 1:
            return
        import torch.distributed as dist

        for tensor in list(model.parameters()) + list(model.buffers()):
            cpu = tensor.detach().cpu()
            dist.broadcast(cpu, 0)
            tensor.data.copy_(cpu.to(tensor.device))

    def average_gradients(self, params: list[torch.nn.Parameter]) -> None:
        if self.world == 1:
            return
        import torch.distributed as dist

        # a parameter without a gradient counts as zeros; one that has none on any process keeps none, so
        # the optimizer skips it as it would in one process. The last len(params) entries count the
        # processes that have each gradient.
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).detach().float().reshape(-1).cpu()
                          for p in params] + [torch.tensor([float(p.grad is not None) for p in params])])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        has_grad = flat[-len(params):]
        for i, p in enumerate(params):
            n = p.numel()
            p.grad = flat[offset:offset + n].view_as(p).to(device=p.device, dtype=p.dtype) if has_grad[i] > 0 else None
            offset += n

    def agree(self, value: float) -> float:
        """Rank 0's ``value`` on every process (the elapsed time that decides when to stop)."""
        if self.world == 1:
            return value
        import torch.distributed as dist

        box = torch.tensor([value], dtype=torch.float64)
        dist.broadcast(box, 0)
        return float(box[0])

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def _step_positions(step: int, batch_size: int, ranks: _Ranks) -> range:
    """Global stream positions of this process's images in ``step``."""
    first = (step * ranks.world + ranks.rank) * batch_size
    return range(first, first + batch_size)


def _batches(stream: PositionDataset, start_step: int, cfg: TrainConfig, ranks: _Ranks):
    """This process's batches from ``start_step`` on, loaded by ``cfg.num_workers`` background processes
    (``0``: in this process, one image at a time)."""
    if cfg.num_workers <= 0:
        for step in range(start_step, cfg.steps):
            yield [stream[pos] for pos in _step_positions(step, cfg.batch_size, ranks)]
        return
    from torch.utils.data import DataLoader

    positions = [pos for step in range(start_step, cfg.steps) for pos in _step_positions(step, cfg.batch_size, ranks)]
    loader = DataLoader(stream, batch_size=cfg.batch_size, sampler=positions, num_workers=cfg.num_workers,
                        collate_fn=collate_samples, prefetch_factor=4)
    yield from loader


def _targets(masks: torch.Tensor, size: tuple[int, int], image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Low-res targets M×256×256 (float 0/1) and the valid (unpadded) area 256×256 (bool)."""
    h, w = size
    padded = F.pad(masks, (0, image_size - w, 0, image_size - h))
    low = F.interpolate(padded[:, None], (LOW_RES, LOW_RES), mode="area")[:, 0] > 0.5
    valid = torch.zeros(image_size, image_size)
    valid[:h, :w] = 1
    valid_low = F.interpolate(valid[None, None], (LOW_RES, LOW_RES), mode="area")[0, 0] > 0.5
    return low.float(), valid_low


def _simulate_session(model: torch.nn.Module, embedding: torch.Tensor, item: dict, cfg: TrainConfig,
                      gen: torch.Generator, device: torch.device) -> tuple[torch.Tensor, dict[str, float]]:
    """Interactive session for the masks of one image; returns the mean loss and its parts.

    ``embedding`` 1×256×64×64, ``item["masks"]`` M×H×W.
    """
    masks = item["masks"]
    gt_low, valid_low = _targets(masks, item["size"], cfg.image_size)
    gt_low_dev = gt_low.to(device)
    state = first_prompts(masks > 0.5, gen, box_prob=cfg.box_prob)
    plan = plan_iterations(cfg.iters_per_sample, gen)
    dense_pe = model.prompt_encoder.get_dense_pe()
    warm = 0
    if cfg.warm_clicks and float(torch.rand((1,), generator=gen)) < cfg.warm_prob:
        warm = 1 + int(torch.randint(cfg.warm_clicks, (1,), generator=gen))
        state = _warm_up(model, embedding, state, warm, gt_low, valid_low, cfg, gen, device, dense_pe)
    total = torch.zeros((), device=device)
    parts = {"focal": 0.0, "dice": 0.0, "iou_mse": 0.0, "iou_first": 0.0, "iou_last": 0.0, "warm_clicks": float(warm)}
    for it in range(len(plan)):
        if it > 0 and plan[it]:
            coords, labels = error_points(gt_low > 0.5, state.mask_input[:, 0].float().cpu(), gen, valid_low,
                                          cfg.image_size)
            state = add_points(state, coords, labels)
        low_res, iou_pred = _decode(model, embedding, state, dense_pe, device)
        out = sam_loss(low_res, iou_pred, gt_low_dev, focal_weight=cfg.focal_weight, dice_weight=cfg.dice_weight)
        total = total + out.loss
        parts["focal"] += float(out.focal) / len(plan)
        parts["dice"] += float(out.dice) / len(plan)
        parts["iou_mse"] += float(out.iou_mse) / len(plan)
        parts["iou_first" if it == 0 else "iou_last"] = float(out.iou.mean())
        chosen = low_res[torch.arange(low_res.shape[0], device=low_res.device), out.best].detach()
        state = PromptState(state.coords, state.labels, state.boxes, chosen[:, None].float())
    return total / len(plan), parts


def _decode(model: torch.nn.Module, embedding: torch.Tensor, state: PromptState, dense_pe: torch.Tensor,
            device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode ``state``'s prompts: (low-res logits M×K×256×256, predicted IoU M×K)."""
    points = (state.coords.to(device), state.labels.to(device)) if state.coords.shape[1] else None
    boxes = state.boxes.to(device) if state.boxes is not None else None
    mask_input = state.mask_input.to(device) if state.mask_input is not None else None
    sparse, dense = model.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
    return model.mask_decoder(image_embeddings=embedding, image_pe=dense_pe, sparse_prompt_embeddings=sparse,
                              dense_prompt_embeddings=dense, multimask_output=state.multimask)


@torch.no_grad()
def _warm_up(model: torch.nn.Module, embedding: torch.Tensor, state: PromptState, clicks: int, gt_low: torch.Tensor,
             valid_low: torch.Tensor, cfg: TrainConfig, gen: torch.Generator, device: torch.device,
             dense_pe: torch.Tensor) -> PromptState:
    """Run ``clicks`` rounds of decode → corrective click without gradients, the way an annotator (or
    the evaluation clicker) goes on: among ambiguous candidates the best *predicted* IoU is kept, the
    previous logits become the mask prompt. Returns the state with all those clicks added."""
    for _ in range(clicks):
        low_res, iou_pred = _decode(model, embedding.detach(), state, dense_pe.detach(), device)
        chosen = low_res[torch.arange(low_res.shape[0], device=low_res.device), iou_pred.argmax(dim=1)]
        coords, labels = error_points(gt_low > 0.5, chosen.float().cpu(), gen, valid_low, cfg.image_size)
        state = add_points(PromptState(state.coords, state.labels, state.boxes, chosen[:, None].float().cpu()),
                           coords, labels)
    return state


def _save_training_checkpoint(model: torch.nn.Module, optimizer: torch.optim.Optimizer, cfg: TrainConfig,
                              step: int, out_dir: Path, elapsed_s: float) -> Path:
    path = out_dir / f"ckpt_{step:07d}.pt"
    atomic_torch_save({"arch": cfg.arch, "model": model.state_dict(),
                       "meta": {"step": step, "config": cfg.to_dict()},
                       "optimizer": optimizer.state_dict(), "step": step, "elapsed_s": elapsed_s}, path)
    for _, old in list_checkpoints(out_dir)[:-max(cfg.keep_checkpoints, 1)]:
        old.unlink(missing_ok=True)
    return path


def train(cfg: TrainConfig, on_progress: ProgressCallback | None = None) -> TrainResult:
    """Train (or fine-tune, or resume) a model as ``cfg`` says; see the module docstring.

    ``on_progress(fraction_done, metrics)`` is called after every step with the running metrics.
    Started by ``torchrun`` (``WORLD_SIZE`` > 1), each process trains on ``cfg.batch_size`` images
    per step and the gradients are averaged (``_Ranks``); only rank 0 reports progress and writes files.
    """
    cfg.validate()
    t_start = time.time()
    ranks = _Ranks()
    try:
        return _train(cfg, on_progress, ranks, t_start)
    finally:
        ranks.close()


def _train(cfg: TrainConfig, on_progress: ProgressCallback | None, ranks: _Ranks, t_start: float) -> TrainResult:
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = ranks.device(cfg.device)
    torch.manual_seed(cfg.seed)
    out_dir = Path(cfg.out_dir)
    if ranks.main:
        out_dir.mkdir(parents=True, exist_ok=True)
        # a run killed while it wrote a checkpoint leaves that write's temporary file (tens of MB); this
        # run writes its own, so the old ones are only clutter
        for stale in out_dir.glob(".*.pt.*.tmp"):
            logger.info("removing %s, left by a run killed while writing it", stale.name)
            stale.unlink(missing_ok=True)

    # data: validated up front so a bad file fails before any compute is spent
    samples = scan_dataset(cfg.dataset_dir, cfg.names, skip_bad=cfg.skip_bad)
    augment = AugmentConfig(copy_paste_prob=cfg.copy_paste_prob) if cfg.augment else None
    dataset = MaskDataset(samples, image_size=cfg.image_size, augment=augment, max_masks=cfg.max_masks_per_image,
                          seed=cfg.seed)
    stream = PositionDataset(dataset, cfg.seed)
    steps_per_epoch = max(len(dataset) // (cfg.batch_size * ranks.world), 1)

    # model and optimizer; weight decay only on matrices and convolutions
    model = _build_model(cfg).to(device)
    if cfg.freeze_image_encoder:
        model.image_encoder.requires_grad_(False)
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for _, p in trainable if p.dim() >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for _, p in trainable if p.dim() < 2], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)

    start_step = 0
    elapsed_before = 0.0  # training seconds spent by earlier (interrupted) runs of this out_dir
    existing = list_checkpoints(out_dir)
    if existing:
        step, path = existing[-1]
        try:
            state = torch.load(path, map_location=device, weights_only=False)
        except Exception as exc:  # written atomically, so only damage from outside gets here
            raise ValueError(f"cannot resume from {path}: the file is damaged ({type(exc).__name__}); delete it "
                             "to resume from the checkpoint before it, or use another out_dir") from exc
        if state.get("arch") != cfg.arch:
            raise ValueError(f"{path} holds arch {state.get('arch')!r}, not {cfg.arch!r}; use another out_dir")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_step = int(state["step"])
        elapsed_before = float(state.get("elapsed_s", 0.0))
        logger.info("resuming from %s (step %d)", path, start_step)
    ranks.broadcast_params(model)
    if ranks.main:
        (out_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))

    use_amp = cfg.amp and device.type == "cuda"
    gen = torch.Generator()
    model.train()
    if cfg.freeze_image_encoder:
        model.image_encoder.eval()
    bar = None
    if cfg.progress_bar and ranks.main:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True)
    epoch_sums: dict[str, float] = {}
    epoch_count = 0
    metrics: dict[str, float] = {}
    metrics_file = out_dir / "metrics.jsonl"
    t_last = time.time()
    images_per_step = cfg.batch_size * ranks.world

    t_run = time.time()
    final_step = cfg.steps
    batches = _batches(stream, start_step, cfg, ranks)
    for step in range(start_step, cfg.steps):
        elapsed = ranks.agree(elapsed_before + time.time() - t_run)
        if cfg.time_budget_s is not None and elapsed >= cfg.time_budget_s:
            final_step = step
            logger.info("time budget of %.0f s used up at step %d", cfg.time_budget_s, step)
            break
        progress = None
        if cfg.time_budget_s is not None:  # decay by whichever runs out first, steps or time
            progress = max(step / cfg.steps, elapsed / cfg.time_budget_s)
        lr = learning_rate(cfg, step, progress)
        # per-step seed (and per process): a resumed run repeats the same prompts
        gen.manual_seed(cfg.seed * 1_000_003 + step + ranks.rank * 1_000_000_007)
        for group in optimizer.param_groups:
            group["lr"] = lr
        items = next(batches)  # the images at this step's global stream positions (resumable)

        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
            pixels = torch.cat([model.preprocess(it["image"].to(device).float()[None]) for it in items])
            if cfg.freeze_image_encoder:
                with torch.no_grad():
                    embeddings = model.image_encoder(pixels)
            else:
                embeddings = model.image_encoder(pixels)
            loss = torch.zeros((), device=device)
            step_parts: dict[str, float] = {}
            for i, item in enumerate(items):
                sample_loss, parts = _simulate_session(model, embeddings[i:i + 1], item, cfg, gen, device)
                loss = loss + sample_loss / len(items)
                for k, v in parts.items():
                    step_parts[k] = step_parts.get(k, 0.0) + v / len(items)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        ranks.average_gradients([p for _, p in trainable])
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_([p for _, p in trainable], cfg.grad_clip)
        optimizer.step()

        now = time.time()
        step_parts.update(loss=float(loss.detach()), lr=lr, samples_per_s=images_per_step / max(now - t_last, 1e-9))
        t_last = now
        for k, v in step_parts.items():
            epoch_sums[k] = epoch_sums.get(k, 0.0) + v
        epoch_count += 1
        metrics = {k: v / epoch_count for k, v in epoch_sums.items()}
        done = step + 1
        epoch_record = None
        if done % steps_per_epoch == 0 or done == cfg.steps:
            epoch_record = {"epoch": done * images_per_step / len(dataset), "step": done, "time": now - t_start,
                            **metrics}
            epoch_sums, epoch_count = {}, 0
        if not ranks.main:
            continue
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{step_parts['loss']:.3f}", iou=f"{step_parts['iou_last']:.2f}",
                            img_s=f"{step_parts['samples_per_s']:.2f}")
        if done % cfg.log_every == 0:
            logger.info("step %d/%d loss %.4f iou_first %.3f iou_last %.3f lr %.2e %.2f img/s", done, cfg.steps,
                        step_parts["loss"], step_parts["iou_first"], step_parts["iou_last"], lr,
                        step_parts["samples_per_s"])
        if epoch_record is not None:
            with open(metrics_file, "a") as fh:
                fh.write(json.dumps(epoch_record) + "\n")
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            _save_training_checkpoint(model, optimizer, cfg, done, out_dir, elapsed_before + now - t_run)
        if on_progress is not None:
            fraction = done / cfg.steps
            if cfg.time_budget_s is not None:
                fraction = min(max(fraction, (elapsed_before + now - t_run) / cfg.time_budget_s), 1.0)
            on_progress(fraction, dict(step_parts, step=done))
    batches.close()  # stops the loader's background processes when the time budget ended the run early
    if bar is not None:
        bar.close()
    model_path = out_dir / "model.pt"
    if ranks.main:
        if final_step < cfg.steps and final_step > start_step:
            _save_training_checkpoint(model, optimizer, cfg, final_step, out_dir,
                                      elapsed_before + time.time() - t_run)
        atomic_torch_save({"arch": cfg.arch, "model": model.state_dict(),
                           "meta": {"steps": final_step, "config": cfg.to_dict(), "train_metrics": metrics,
                                    "processes": ranks.world}}, model_path)
    ranks.barrier()
    return TrainResult(out_dir=str(out_dir), model_path=str(model_path), steps=final_step,
                       resumed_from_step=start_step, wall_time_s=time.time() - t_start, metrics=metrics)
