"""Drive a running Maskloop through all three stages and retraining rounds with robot annotators.

Everything goes through the public REST API: project set-up, uploads, leases, embeddings, the ONNX
decoder, annotations, rounds, promotion, prefill and automatic jobs. The held-out evaluation runs in
a second project holding the validation images, whose active model is switched to each version in
turn, so every model is measured by the same robot clicker and the same in-browser decoding path.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from pycocotools import mask as mask_utils

from backend.services.mask_refine import RefineParams
from workers.evaluation.metrics import clicks_to_reach, summarize
from workers.simulation.api_client import MaskloopClient
from workers.simulation.robot import CostModel, OnnxDecoderSession, annotate_instance
from workers.training.data import read_image, read_mask, scan_dataset, split_dataset

log = logging.getLogger(__name__)
_CATEGORY = re.compile(r"^(?P<category>[a-z_ ]+?)\d+_")


@dataclass
class SimulationConfig:
    base_url: str
    username: str
    password: str
    dataset_dir: Path
    out_dir: Path
    rounds: int = 2
    stage_images: tuple[int, int, int] = (40, 20, 10)
    heldout_images: int = 40
    annotators: int = 2
    iou_target: float = 0.85
    max_clicks: int = 20
    heldout_max_clicks: int = 20
    round_steps: int | None = None
    round_lr: float | None = None  # None: the server's default learning rate
    round_train_encoder: bool = False  # the server's default freezes the image encoder
    round_timeout: float = 3600.0
    job_timeout: float = 1800.0
    prefill_match_iou: float = 0.85
    points_per_side: int = 32  # grid of the prefill and automatic jobs
    pred_iou_thresh: float | None = None  # filters of the prefill and automatic jobs (None: the server's)
    stability_score_thresh: float | None = None
    cost: CostModel = field(default_factory=CostModel)
    project_name: str = "simulation"
    seed: int = 0
    # where the stages' images come from: "train", or "val" (the validation images the held-out
    # evaluation does not use: images the shipped default, trained on the train split, never saw)
    annotate_split: str = "train"


ANNOTATE_SPLITS = ("train", "val")


def pick_images(train: list[str], val: list[str], stage_images: tuple[int, int, int], heldout_images: int, *,
                annotate_split: str = "train", seed: int = 0) -> tuple[list[list[str]], list[str]]:
    """The three stages' image slices and the held-out images, disjoint and deterministic in ``seed``.

    The held-out images are the first ``heldout_images`` of a shuffled validation split. The stages
    take a shuffled training split, or with ``annotate_split="val"`` the validation images after
    the held-out ones: a model trained on the training split (the shipped default) has seen every
    training image, so annotating them gives a retraining round nothing it does not already know.
    """
    if annotate_split not in ANNOTATE_SPLITS:
        raise ValueError(f"annotate_split must be one of {', '.join(ANNOTATE_SPLITS)}; got {annotate_split!r}")
    if min(*stage_images, heldout_images) < 0 or stage_images[0] < 1 or heldout_images < 1:
        raise ValueError(f"stage 1 and the held-out set need at least one image each, and no count can be "
                         f"negative; got stages {tuple(stage_images)} and {heldout_images} held out")
    rng = np.random.default_rng(seed)
    train = [str(n) for n in rng.permutation(train)]
    val = [str(n) for n in rng.permutation(val)]
    need = sum(stage_images)
    if len(val) < heldout_images:
        raise ValueError(f"dataset has {len(val)} validation images, the held-out set needs {heldout_images}")
    heldout, pool = val[:heldout_images], (train if annotate_split == "train" else val[heldout_images:])
    if len(pool) < need:
        where = ("training images" if annotate_split == "train"
                 else f"validation images besides the {heldout_images} held out")
        raise ValueError(f"dataset has {len(pool)} {where}, the stages need {need}")
    s1, s2, s3 = stage_images
    return [pool[:s1], pool[s1 : s1 + s2], pool[s1 + s2 : s1 + s2 + s3]], heldout


@dataclass
class GroundTruth:
    name: str
    path: Path
    masks: list[np.ndarray]  # bool H×W per instance


def load_ground_truth(dataset_dir: Path, names: list[str]) -> list[GroundTruth]:
    out = []
    for s in scan_dataset(dataset_dir, names):
        out.append(GroundTruth(s.name, s.image_path, [read_mask(p) > 128 for p in s.mask_paths]))
    return out


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(x) for x in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _decode_rle(seg: dict) -> np.ndarray:
    return mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode("ascii")}).astype(bool)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return 0.0 if union == 0 else np.count_nonzero(a & b) / union


class DecoderCache:
    """ONNX decoder sessions per model version, fetched once from the API."""

    def __init__(self, client: MaskloopClient):
        self.client = client
        self._lock = threading.Lock()
        self._sessions: dict[int, OnnxDecoderSession] = {}

    def get(self, model_version_id: int) -> OnnxDecoderSession:
        with self._lock:
            if model_version_id not in self._sessions:
                single = self.client.decoder_bytes(model_version_id)
                if single is None:
                    raise RuntimeError(f"model version {model_version_id} has no decoder.onnx")
                multi = self.client.decoder_bytes(model_version_id, "multimask")
                refine = RefineParams.from_dict(self.client.get(f"/models/{model_version_id}").get("refine"))
                self._sessions[model_version_id] = OnnxDecoderSession(single, multi, refine)
            return self._sessions[model_version_id]


class Simulation:
    def __init__(self, cfg: SimulationConfig, progress: Callable[[str], None] | None = None):
        self.cfg = cfg
        self.say = progress or (lambda msg: log.info(msg))
        self.admin = MaskloopClient(cfg.base_url)
        self.report: dict[str, Any] = {"config": _config_json(cfg), "phases": [], "models": [], "rounds": []}

    # -- set-up --------------------------------------------------------------------------------
    def _labels(self, names: list[str]) -> list[str]:
        cats = sorted({(_CATEGORY.match(n) or re.match(r"(?P<category>.*)", "object"))["category"] for n in names})
        return cats or ["object"]

    def setup(self) -> None:
        cfg = self.cfg
        self.admin.login(cfg.username, cfg.password)
        train, val = split_dataset(cfg.dataset_dir)
        self.slices, self.heldout = pick_images(train, val, cfg.stage_images, cfg.heldout_images,
                                                annotate_split=cfg.annotate_split, seed=cfg.seed)
        s1, s2, s3 = cfg.stage_images
        rng = np.random.default_rng(cfg.seed)  # the robots' passwords
        all_names = [n for sl in self.slices for n in sl] + self.heldout
        labels = self._labels(all_names)
        palette = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c"]
        label_body = [{"name": n, "color": palette[i % len(palette)]} for i, n in enumerate(labels)]
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.project = self.admin.post("/projects", {"name": f"{cfg.project_name} {stamp}", "labels": label_body})
        self.heldout_project = self.admin.post(
            "/projects", {"name": f"{cfg.project_name} held-out {stamp}", "labels": label_body})
        self.label_ids = {lab["name"]: lab["id"] for lab in self.project["labels"]}
        self.robots: list[MaskloopClient] = []
        for i in range(cfg.annotators):
            uname = f"robot{i + 1}-{stamp}"
            pwd = f"robot-pass-{rng.integers(1 << 30)}"
            user = self.admin.post("/users", {"username": uname, "password": pwd, "role": "annotator"})
            self.admin.post(f"/projects/{self.project['id']}/members", {"user_id": user["id"]})
            client = MaskloopClient(cfg.base_url)
            client.login(uname, pwd)
            self.robots.append(client)
        self.decoders = DecoderCache(self.admin)
        self.gt: dict[str, GroundTruth] = {g.name: g for g in load_ground_truth(cfg.dataset_dir, all_names)}
        self.say(f"project {self.project['id']}: stages of {s1}/{s2}/{s3} images, {len(self.heldout)} held out, "
                 f"{cfg.annotators} robot annotators")

    def _upload(self, project_id: int, names: list[str]) -> dict[int, str]:
        images = self.admin.upload_images(project_id, [self.gt[n].path for n in names])
        return {img["id"]: Path(img["file_name"]).stem for img in images}

    def _active_model(self, project_id: int) -> int:
        mv = self.admin.get(f"/projects/{project_id}")["active_model_version_id"]
        if mv is None:
            raise RuntimeError(f"project {project_id} has no active model version")
        return int(mv)

    # -- stages ---------------------------------------------------------------------------------
    def _work_queue(self, stage: str, image_names: dict[int, str]) -> dict[str, Any]:
        """Robots lease and annotate images until the queue is empty."""
        pid = self.project["id"]
        stats = {"masks": 0, "clicks": 0, "seconds": 0.0, "images": 0, "prefill_seen": 0,
                 "prefill_accepted": 0, "reached": 0, "decode_seconds": 0.0, "decodes": 0}
        lock = threading.Lock()

        def robot_loop(client: MaskloopClient) -> None:
            while True:
                resp = client._request("POST", f"/projects/{pid}/next", expect=(200, 204))
                if resp.status_code == 204:
                    return
                lease = resp.json()
                image = lease["image"]
                name = image_names.get(image["id"]) or Path(image["file_name"]).stem
                gt = self.gt[name]
                local = self._annotate_image(client, stage, image, gt)
                client.post(f"/leases/{lease['lease_id']}/submit")
                with lock:
                    for k, v in local.items():
                        stats[k] += v
                    stats["images"] += 1

        with ThreadPoolExecutor(max_workers=len(self.robots)) as pool:
            for fut in [pool.submit(robot_loop, c) for c in self.robots]:
                fut.result()
        return stats

    def _annotate_image(self, client: MaskloopClient, stage: str, image: dict, gt: GroundTruth) -> dict[str, Any]:
        cfg = self.cfg
        mv = self._active_model(self.project["id"])
        decoder = self.decoders.get(mv)
        emb, header, _ = client.fetch_embedding(image["id"], timeout=cfg.job_timeout)
        out = {"masks": 0, "clicks": 0, "seconds": 0.0, "prefill_seen": 0, "prefill_accepted": 0,
               "reached": 0, "decode_seconds": 0.0, "decodes": 0}
        remaining = list(range(len(gt.masks)))
        refiner = decoder.refiner(read_image(gt.path), header) if remaining else None
        if stage == "semi_automatic":
            for ann in client.get(f"/images/{image['id']}/annotations"):
                if ann["source"] != "semi_auto":
                    continue
                out["prefill_seen"] += 1
                out["seconds"] += cfg.cost.seconds_per_verify
                mask = _decode_rle(ann["segmentation"])
                best = max(remaining, key=lambda i: _iou(mask, gt.masks[i]), default=None)
                if best is not None and _iou(mask, gt.masks[best]) >= cfg.prefill_match_iou:
                    client.patch(f"/annotations/{ann['id']}", {"source": "semi_auto_accepted",
                                                               "label_id": self._label_for(gt.name)})
                    remaining.remove(best)
                    out["prefill_accepted"] += 1
                else:  # rejected: the server keeps it (for undo) and counts it in the project's metrics
                    client.post(f"/annotations/{ann['id']}/reject")
        for i in remaining:
            res = annotate_instance(decoder, emb, header, gt.masks[i], iou_target=cfg.iou_target,
                                    max_clicks=cfg.max_clicks, refiner=refiner)
            # A mask the model never got right is finished with the brush: the stored mask is the
            # annotator's (ground truth) and costs the touch-up time.
            final = res.mask if res.reached_target else gt.masks[i]
            seconds = cfg.cost.mask_seconds(res.clicks, res.reached_target)
            client.post(f"/images/{image['id']}/annotations", {
                "label_id": self._label_for(gt.name),
                "segmentation": _rle(final),
                "source": "assisted" if res.reached_target else "manual",
                "clicks": res.clicks,
                "seconds": seconds,
                "predicted_iou": res.predicted_iou if res.reached_target else None,
                "model_version_id": mv,
                "client_uid": f"sim-{image['id']}-{i}-{mv}",
            })
            out["masks"] += 1
            out["clicks"] += res.clicks
            out["seconds"] += seconds
            out["reached"] += int(res.reached_target)
            out["decode_seconds"] += res.decode_seconds
            out["decodes"] += len(res.ious)
        return out

    def _label_for(self, name: str) -> int:
        m = _CATEGORY.match(name)
        return self.label_ids.get(m["category"] if m else "object", next(iter(self.label_ids.values())))

    def _phase(self, name: str, stage: str, names: list[str], run: Callable[[dict[int, str]], dict]) -> None:
        t0 = time.monotonic()
        self.admin.patch(f"/projects/{self.project['id']}", {"stage": stage})
        image_names = self._upload(self.project["id"], names)
        mv = self._active_model(self.project["id"])
        stats = run(image_names)
        n_masks = stats.get("masks", 0) + stats.get("prefill_accepted", 0)
        phase = {
            "name": name, "stage": stage, "model_version": mv, "images": len(names),
            "masks_per_image": n_masks / max(len(names), 1),
            "clicks_per_mask": stats["clicks"] / stats["masks"] if stats.get("masks") else None,
            "seconds_per_mask": stats["seconds"] / n_masks if n_masks else None,
            "share_reaching_target": stats["reached"] / stats["masks"] if stats.get("masks") else None,
            "prefill_accept_share": (stats["prefill_accepted"] / stats["prefill_seen"]
                                     if stats.get("prefill_seen") else None),
            "decoder_ms_per_click": (1000 * stats["decode_seconds"] / stats["decodes"]
                                     if stats.get("decodes") else None),
            "wall_seconds": time.monotonic() - t0,
            **{k: v for k, v in stats.items() if k.startswith("automatic_")},
        }
        self.report["phases"].append(phase)
        self.say(f"{name}: {phase}")

    def _grid_job(self, ids: dict[int, str]) -> dict[str, Any]:
        """Body of a prefill/automatic job over ``ids``: grid size and, when set, the mask filters."""
        body: dict[str, Any] = {"points_per_side": self.cfg.points_per_side, "image_ids": list(ids)}
        if self.cfg.pred_iou_thresh is not None:
            body["pred_iou_thresh"] = self.cfg.pred_iou_thresh
        if self.cfg.stability_score_thresh is not None:
            body["stability_score_thresh"] = self.cfg.stability_score_thresh
        return body

    def stage_assisted(self, names: list[str], label: str) -> None:
        self._phase(label, "assisted_manual", names, lambda ids: self._work_queue("assisted_manual", ids))

    def stage_semi_automatic(self, names: list[str], label: str) -> None:
        def run(ids: dict[int, str]) -> dict:
            job = self.admin.post(f"/projects/{self.project['id']}/prefill",  # this stage's images only
                                  self._grid_job(ids))
            self._wait_job(job["id"], "semi-automatic prefill")
            return self._work_queue("semi_automatic", ids)

        self._phase(label, "semi_automatic", names, run)

    def stage_automatic(self, names: list[str], label: str) -> None:
        def run(ids: dict[int, str]) -> dict:
            job = self.admin.post(f"/projects/{self.project['id']}/automatic",  # this stage's images only
                                  self._grid_job(ids))
            self._wait_job(job["id"], "fully automatic batch")
            matched = total = found = 0
            best_ious = []
            for image_id, name in ids.items():
                anns = [a for a in self.admin.get(f"/images/{image_id}/annotations") if a["source"] == "automatic"]
                masks = [_decode_rle(a["segmentation"]) for a in anns]
                total += len(masks)
                for gt in self.gt[name].masks:
                    ious = [_iou(m, gt) for m in masks]
                    best_ious.append(max(ious, default=0.0))
                    found += int(best_ious[-1] >= 0.5)
                matched += sum(1 for m in masks if any(_iou(m, g) >= 0.5 for g in self.gt[name].masks))
            return {"masks": 0, "clicks": 0, "seconds": 0.0, "reached": 0, "prefill_accepted": 0,
                    "prefill_seen": 0, "decode_seconds": 0.0, "decodes": 0,
                    "automatic_masks_per_image": total / max(len(ids), 1),
                    "automatic_precision": matched / total if total else None,
                    "automatic_gt_recall@0.5": found / max(len(best_ious), 1),
                    "automatic_gt_best_iou": float(np.mean(best_ious)) if best_ious else None}

        self._phase(label, "fully_automatic", names, run)

    def _wait_job(self, job_id: int, what: str) -> dict:
        job = self.admin.wait_until(lambda: self.admin.get(f"/jobs/{job_id}"),
                                    lambda j: j["status"] in ("succeeded", "failed"),
                                    timeout=self.cfg.job_timeout, what=what, interval=1.0)
        if job["status"] == "failed":
            raise RuntimeError(f"{what} failed: {job.get('error')}")
        return job

    # -- rounds and evaluation ------------------------------------------------------------------
    def retraining_round(self, index: int) -> None:
        t0 = time.monotonic()
        body: dict[str, Any] = {}
        if self.cfg.round_steps:
            body["steps"] = self.cfg.round_steps
        if self.cfg.round_lr is not None:
            body["learning_rate"] = self.cfg.round_lr
        if self.cfg.round_train_encoder:
            body["freeze_image_encoder"] = False
        rnd = self.admin.post(f"/projects/{self.project['id']}/rounds", body)
        self.say(f"round {index}: started ({rnd.get('n_annotations')} annotations)")
        last = [-1.0]

        def fetch():
            r = self.admin.get(f"/rounds/{rnd['id']}")
            if r.get("progress") is not None and r["progress"] - last[0] >= 0.1:
                last[0] = r["progress"]
                self.say(f"round {index}: {r['status']} {100 * r['progress']:.0f}% {r.get('message') or ''}")
            return r

        rnd = self.admin.wait_until(fetch, lambda r: r["status"] in ("succeeded", "failed"),
                                    timeout=self.cfg.round_timeout, what=f"round {index}", interval=2.0)
        if rnd["status"] == "failed":
            raise RuntimeError(f"round {index} failed: {rnd.get('error')}")
        self.admin.post(f"/rounds/{rnd['id']}/promote")
        self.report["rounds"].append({
            "round": index, "id": rnd["id"], "n_annotations": rnd.get("n_annotations"),
            "base_model_version": rnd.get("base_model_version_id"), "model_version": rnd.get("model_version_id"),
            "metrics_before": rnd.get("metrics_before"), "metrics_after": rnd.get("metrics_after"),
            "params": rnd.get("params"), "wall_seconds": time.monotonic() - t0,
        })
        self.say(f"round {index}: promoted model version {rnd.get('model_version_id')}")

    def evaluate_heldout(self, label: str) -> None:
        """Robot-clicker protocol (20 clicks) on the held-out images with the current model."""
        t0 = time.monotonic()
        mv = self._active_model(self.project["id"])
        hp = self.heldout_project["id"]
        if not hasattr(self, "heldout_ids"):
            self.heldout_ids = self._upload(hp, self.heldout)
        self.admin.post(f"/projects/{hp}/active-model", {"model_version_id": mv})
        decoder = self.decoders.get(mv)
        k_max = self.cfg.heldout_max_clicks
        curves = []
        for image_id, name in self.heldout_ids.items():
            emb, header, _ = self.admin.fetch_embedding(image_id, timeout=self.cfg.job_timeout)
            if str(header.model_version) != str(mv):
                raise RuntimeError(f"held-out embedding is of model {header.model_version}, expected {mv}")
            refiner = decoder.refiner(read_image(self.gt[name].path), header)
            for gt in self.gt[name].masks:
                res = annotate_instance(decoder, emb, header, gt, iou_target=1.01, max_clicks=k_max, refiner=refiner)
                # A perfect mask ends the clicking early: it keeps its IoU for the remaining clicks.
                ious = res.ious + [res.ious[-1] if res.ious else 0.0] * (k_max - len(res.ious))
                curves.append(ious)
        s = summarize(curves, max_clicks=k_max)
        entry = {"model_version": mv, "label": label, "images": len(self.heldout_ids),
                 "noc85": s["noc@85"], "noc90": s["noc@90"], "nof90": s["nof@90"],
                 "miou1": s.get("miou@1"), "miou3": s.get("miou@3"), "miou5": s.get("miou@5"),
                 "miou_curve": s["miou_curve"], "wall_seconds": time.monotonic() - t0,
                 # per held-out object, in the same order for every model: the verdicts pair them
                 "noc90_per_object": [clicks_to_reach(c, 0.9, k_max) for c in curves]}
        self.report["models"].append(entry)
        self.say(f"held-out eval of model {mv} ({label}): NoC@85 {entry['noc85']}, NoC@90 {entry['noc90']}, "
                 f"mIoU@1 {entry['miou1']}")

    # -- the whole loop -------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        t0 = time.monotonic()
        self.setup()
        self.evaluate_heldout("initial")
        self.stage_assisted(self.slices[0], "stage 1 assisted-manual")
        for r in range(1, self.cfg.rounds + 1):
            self.retraining_round(r)
            self.evaluate_heldout(f"after round {r}")
            if r == 1:
                self.stage_semi_automatic(self.slices[1], "stage 2 semi-automatic")
        self.stage_automatic(self.slices[2], "stage 3 fully automatic")
        self.report["wall_seconds"] = time.monotonic() - t0
        self.report["verdicts"] = _verdicts(self.report)
        return self.report


def _verdicts(report: dict[str, Any]) -> list[str]:
    """One line per round: the held-out NoC@90 and mIoU@1 before and after it, and whether the model got
    better. With per-object clicks (``noc90_per_object``) the judgement is paired per object: "better"
    or "worse" only when the mean difference exceeds twice its standard error, else "within noise"
    (on 40 objects one standard error is about 0.4 clicks); without them, the means decide."""
    lines = []
    models = report["models"]
    for before, after in zip(models, models[1:]):
        if before["noc90"] is None or after["noc90"] is None:
            continue
        head = (f"{after['label']}: held-out NoC@90 {before['noc90']:.2f} -> {after['noc90']:.2f}, "
                f"mIoU@1 {before['miou1']:.3f} -> {after['miou1']:.3f}")
        a, b = before.get("noc90_per_object"), after.get("noc90_per_object")
        if a and b and len(a) == len(b) and len(a) >= 2:
            diff = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
            mean, se = float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(len(diff)))
            word = "better" if mean < -2 * se else "worse" if mean > 2 * se else "within noise"
            lines.append(f"{head}; paired NoC@90 {mean:+.2f} ± {se:.2f} clicks over {len(diff)} objects ({word})")
        else:
            lines.append(f"{head} ({'better' if after['noc90'] < before['noc90'] else 'NOT better'})")
    return lines


def _config_json(cfg: SimulationConfig) -> dict[str, Any]:
    return {"dataset_dir": str(cfg.dataset_dir), "rounds": cfg.rounds, "stage_images": list(cfg.stage_images),
            "heldout_images": cfg.heldout_images, "annotators": cfg.annotators, "iou_target": cfg.iou_target,
            "max_clicks": cfg.max_clicks, "points_per_side": cfg.points_per_side,
            "pred_iou_thresh": cfg.pred_iou_thresh, "stability_score_thresh": cfg.stability_score_thresh,
            "heldout_max_clicks": cfg.heldout_max_clicks, "round_steps": cfg.round_steps,
            "round_lr": cfg.round_lr, "round_train_encoder": cfg.round_train_encoder,
            "cost_model": cfg.cost.__dict__, "seed": cfg.seed, "annotate_split": cfg.annotate_split}
