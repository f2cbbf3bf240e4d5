"""COCO instances JSON (RLE segmentation) from a project's export data.

Categories are the project's labels (label id = category id); annotations without a label go to a
category ``unlabeled`` with id 0, added only when needed. Segmentations are compressed RLE strings
as stored (canonical pycocotools encoding); bbox and area are recomputed with pycocotools.
"""
from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from pycocotools import mask as mask_utils

if TYPE_CHECKING:
    from backend.services.export import ExportData

UNLABELED_ID = 0


def score(value: Any) -> float | None:
    """A model score as JSON can hold it: a number, or null (NaN and infinities are not JSON; rows stored
    before the API and the COCO import refused them may hold them)."""
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def rle_geometry(segmentation: dict[str, Any]) -> tuple[list[float], float]:
    """(bbox XYWH, area) of a compressed RLE ``{size: [H, W], counts: str}``."""
    rle = {"size": [int(v) for v in segmentation["size"]], "counts": segmentation["counts"].encode("ascii")}
    return [float(v) for v in mask_utils.toBbox(rle)], float(mask_utils.area(rle))


def coco_dict(data: "ExportData") -> dict[str, Any]:
    """The COCO dataset as a dict: info, images, categories, annotations."""
    label_ids = {label["id"] for label in data.labels}
    categories = [{"id": label["id"], "name": label["name"], "supercategory": ""} for label in data.labels]
    annotations = []
    for a in data.annotations:
        category = a["label_id"] if a["label_id"] in label_ids else UNLABELED_ID
        bbox, area = rle_geometry(a["segmentation"])
        annotations.append({
            "id": a["id"], "image_id": a["image_id"], "category_id": category,
            "segmentation": {"size": [int(v) for v in a["segmentation"]["size"]],
                             "counts": a["segmentation"]["counts"]},
            "area": area, "bbox": bbox, "iscrowd": 0,
            "source": a["source"], "stage": a["stage"], "review_state": a["review_state"],
            "predicted_iou": score(a["predicted_iou"]), "stability_score": score(a["stability_score"]),
            "object_score": score(a.get("object_score")),
        })
    if any(a["category_id"] == UNLABELED_ID for a in annotations):
        categories.insert(0, {"id": UNLABELED_ID, "name": "unlabeled", "supercategory": ""})
    images = [{"id": im["id"], "file_name": im["file_name"], "width": im["width"], "height": im["height"]}
              for im in data.images]
    return {
        "info": {"description": f"Maskloop export of project {data.project['name']}",
                 "date_created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "version": "1.0"},
        "licenses": [],
        "images": images,
        "categories": categories,
        "annotations": annotations,
    }


def coco_json_bytes(data: "ExportData") -> bytes:
    return json.dumps(coco_dict(data), separators=(",", ":"), allow_nan=False).encode("utf-8")
