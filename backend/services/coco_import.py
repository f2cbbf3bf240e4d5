"""Import an existing COCO instances dataset into a project, all or nothing.

Images are matched by base file name to images already in the project, or read from ``images_path``
(a folder below an import root). Categories become labels (missing ones are created), polygon and
RLE segmentations (compressed or not) become canonical compressed RLEs with pycocotools.
Imported masks are ``source="manual"`` annotations of the project's current stage; images that
receive masks are marked ``done``. Every problem raises BadRequest naming the offending entry; the
caller commits only when the whole import succeeded.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.core.config import Settings
from backend.core.errors import BadRequest, DomainError
from backend.db.models import Annotation, Image, Label, Project
from backend.services import images as image_service
from backend.services.rle import validate_rle
from backend.storage import BlobStorage

log = logging.getLogger(__name__)
PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c")


def _int(value: Any, what: str) -> int:
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or (isinstance(value, float) and not math.isfinite(value)) or int(value) != value):
        raise BadRequest(f"{what} must be an integer, got {value!r}")
    return int(value)


def _list(coco: dict, key: str, required: bool = True) -> list:
    value = coco.get(key, None if required else [])
    if not isinstance(value, list):
        raise BadRequest(f"COCO field {key!r} must be a list" + ("" if value is not None else " (it is missing)"))
    return value


def validate_structure(coco: Any) -> tuple[dict[int, dict], dict[int, str], list[dict]]:
    """Check the top-level shape; return (images by id, category names by id, annotations)."""
    if not isinstance(coco, dict):
        raise BadRequest("COCO file must hold a JSON object with images, annotations and categories")
    images: dict[int, dict] = {}
    for i, im in enumerate(_list(coco, "images")):
        if not isinstance(im, dict):
            raise BadRequest(f"images[{i}] is not an object")
        iid = _int(im.get("id"), f"images[{i}].id")
        if iid in images:
            raise BadRequest(f"images[{i}]: duplicate image id {iid}")
        name = im.get("file_name")
        if not isinstance(name, str) or not name:
            raise BadRequest(f"images[{i}] (id {iid}) has no file_name")
        if "\x00" in name:
            raise BadRequest(f"images[{i}] (id {iid}): file_name contains a NUL character")
        w, h = _int(im.get("width"), f"images[{i}].width"), _int(im.get("height"), f"images[{i}].height")
        if w <= 0 or h <= 0:
            raise BadRequest(f"images[{i}] (id {iid}) has a non-positive size {w}x{h}")
        images[iid] = {"file_name": name, "width": w, "height": h}
    categories: dict[int, str] = {}
    for i, cat in enumerate(_list(coco, "categories")):
        if not isinstance(cat, dict):
            raise BadRequest(f"categories[{i}] is not an object")
        cid = _int(cat.get("id"), f"categories[{i}].id")
        name = cat.get("name")
        if not isinstance(name, str) or not name.strip():
            raise BadRequest(f"categories[{i}] (id {cid}) has no name")
        if cid in categories:
            raise BadRequest(f"categories[{i}]: duplicate category id {cid}")
        if len(name.strip()) > MAX_LABEL_NAME or "\x00" in name:
            raise BadRequest(f"categories[{i}] (id {cid}): a label name has at most {MAX_LABEL_NAME} characters "
                             "and no NUL character")
        categories[cid] = name.strip()
    annotations = _list(coco, "annotations", required=False)
    for i, ann in enumerate(annotations):
        if not isinstance(ann, dict):
            raise BadRequest(f"annotations[{i}] is not an object")
        iid = _int(ann.get("image_id"), f"annotations[{i}].image_id")
        if iid not in images:
            raise BadRequest(f"annotations[{i}] refers to unknown image id {iid}")
        cid = _int(ann.get("category_id"), f"annotations[{i}].category_id")
        if cid not in categories:
            raise BadRequest(f"annotations[{i}] refers to unknown category id {cid}")
    return images, categories, annotations


# the ranges the annotations API accepts for the model's scores (backend/schemas/annotations.py)
SCORE_RANGES = {"predicted_iou": (-10.0, 10.0), "stability_score": (-10.0, 10.0), "object_score": (0.0, 1.0)}
MAX_LABEL_NAME = 120


def _scores(ann: dict, what: str) -> dict[str, float]:
    """The model scores an annotation carries, checked as the annotations API checks them."""
    out = {}
    for key, (lo, hi) in SCORE_RANGES.items():
        value = ann.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            raise BadRequest(f"{what}: {key} must be a number from {lo:g} to {hi:g}, not {value!r}")
        out[key] = float(value)
    return out


def segmentation_to_rle(seg: Any, height: int, width: int, what: str) -> tuple[dict, list[float], float]:
    """Polygon list, uncompressed RLE or compressed RLE → (canonical RLE, bbox, area)."""
    if isinstance(seg, list):
        if not seg:
            raise BadRequest(f"{what}: empty polygon list")
        polys = []
        for poly in seg:
            if (not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in poly)):
                raise BadRequest(f"{what}: each polygon must be a flat list of at least 3 x,y number pairs")
            coords = [float(v) for v in poly]
            # pycocotools rasterises with memory in proportion to the coordinates: a coordinate far outside
            # the image (or NaN, infinity) would exhaust the server's memory, so only the image and one
            # image size around it are accepted
            xs, ys = coords[0::2], coords[1::2]
            if not all(math.isfinite(v) for v in coords) or min(xs) < -width or max(xs) > 2 * width \
                    or min(ys) < -height or max(ys) > 2 * height:
                raise BadRequest(f"{what}: polygon coordinates must be finite and lie within the image "
                                 f"({width}x{height}), or at most one image size outside it")
            polys.append(coords)
        rle = mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    elif isinstance(seg, dict):
        size, counts = seg.get("size"), seg.get("counts")
        if not isinstance(size, list) or len(size) != 2 or [_int(size[0], what), _int(size[1], what)] != [height, width]:
            raise BadRequest(f"{what}: RLE size {size!r} does not match the image size [{height}, {width}]")
        if isinstance(counts, str):
            try:
                return validate_rle({"size": size, "counts": counts}, height, width)
            except BadRequest as exc:
                raise BadRequest(f"{what}: {exc.detail}") from None
        if not isinstance(counts, list) or not all(isinstance(c, int) and c >= 0 for c in counts):
            raise BadRequest(f"{what}: RLE counts must be a string or a list of non-negative integers")
        if sum(counts) != height * width:
            raise BadRequest(f"{what}: RLE counts cover {sum(counts)} pixels, the image has {height * width}")
        rle = mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    else:
        raise BadRequest(f"{what}: segmentation must be a polygon list or an RLE object")
    mask = mask_utils.decode(rle)
    if not mask.any():
        raise BadRequest(f"{what}: the segmentation covers no pixel")
    canon = mask_utils.encode(np.asfortranarray(mask))
    return validate_rle({"size": [height, width], "counts": canon["counts"].decode("ascii")}, height, width)


def _resolve_images(session: Session, storage: BlobStorage, settings: Settings, project: Project,
                    images: dict[int, dict], images_path: str | None) -> tuple[dict[int, Image], list[Image]]:
    existing = {im.file_name: im for im in session.scalars(select(Image).where(Image.project_id == project.id))}
    folder = image_service.resolve_import_path(settings, images_path) if images_path else None
    mapping: dict[int, Image] = {}
    created: list[Image] = []
    for iid, info in images.items():
        name = info["file_name"]
        base = Path(name.replace("\\", "/")).name
        image = existing.get(base)
        if image is None and folder is not None:
            candidate = (folder / name).resolve()
            if folder not in candidate.parents:
                raise BadRequest(f"image {iid}: file_name {name!r} leaves images_path")
            if not candidate.is_file():
                candidate = (folder / base).resolve()
            if candidate.is_file():
                try:
                    result = image_service.ingest_bytes(session, storage, settings, project, base,
                                                        candidate.read_bytes())
                except DomainError as exc:
                    raise BadRequest(f"image {iid} ({name}): {exc.detail}") from None
                image = result.image
                existing[image.file_name] = image
                if not result.duplicate:
                    created.append(image)
        if image is None:
            where = f"in {images_path!r} or " if folder else ""
            raise BadRequest(f"image {iid}: file {name!r} not found {where}among the project's uploaded images"
                             + ("" if folder else "; upload it first or pass images_path"))
        if (image.width, image.height) != (info["width"], info["height"]):
            raise BadRequest(f"image {iid} ({name}): COCO says {info['width']}x{info['height']}, "
                             f"the file is {image.width}x{image.height}")
        mapping[iid] = image
    return mapping, created


def import_coco(session: Session, storage: BlobStorage, settings: Settings, project: Project,
                coco: Any, images_path: str | None = None, annotator_id: int | None = None) -> dict[str, Any]:
    """Add the dataset's images, labels and masks to ``project`` in the session (caller commits).

    Returns counts plus ``_created_images`` (the new Image rows, for embedding requests).
    """
    images, categories, annotations = validate_structure(coco)
    mapping, created = _resolve_images(session, storage, settings, project, images, images_path)
    labels = {lb.name: lb for lb in session.scalars(select(Label).where(Label.project_id == project.id))}
    labels_created = 0
    label_for: dict[int, Label] = {}
    for cid, name in categories.items():
        if name not in labels:
            labels[name] = Label(project_id=project.id, name=name, color=PALETTE[len(labels) % len(PALETTE)])
            session.add(labels[name])
            labels_created += 1
        label_for[cid] = labels[name]
    session.flush()
    touched: set[int] = set()
    for i, ann in enumerate(annotations):
        image = mapping[int(ann["image_id"])]
        rle, bbox, area = segmentation_to_rle(ann.get("segmentation"), image.height, image.width,
                                              f"annotations[{i}] (id {ann.get('id')})")
        scores = _scores(ann, f"annotations[{i}] (id {ann.get('id')})")
        session.add(Annotation(image_id=image.id, label_id=label_for[int(ann["category_id"])].id, segmentation=rle,
                               bbox=bbox, area=area, stage=project.stage, source="manual",
                               annotator_id=annotator_id, **scores))
        touched.add(image.id)
    for image in mapping.values():
        if image.id in touched and image.status in ("new", "embedded"):
            image.status = "done"
    session.flush()
    log.info("COCO import into project %s: %d images (%d new), %d annotations, %d new labels", project.id,
             len(mapping), len(created), len(annotations), labels_created)
    return {"images": len(mapping), "images_created": len(created), "annotations_created": len(annotations),
            "labels_created": labels_created, "_created_images": created}
