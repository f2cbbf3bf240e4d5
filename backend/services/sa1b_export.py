"""SA-1B style export: a zip holding one JSON per image (``sa_<image id>.json``).

Each JSON is ``{image: {image_id, width, height, file_name}, annotations: [{id, segmentation, bbox,
area, predicted_iou, stability_score, crop_box, point_coords}]}`` with compressed RLE segmentations,
the layout of the Segment Anything 1-Billion dataset's per-image files.
"""
from __future__ import annotations

import io
import json
import zipfile
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from backend.services.coco_export import rle_geometry, score

if TYPE_CHECKING:
    from backend.services.export import ExportData


def sa1b_records(data: "ExportData") -> list[tuple[str, dict[str, Any]]]:
    """(file name inside the zip, per-image JSON dict) for every image of the project."""
    by_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for a in data.annotations:
        by_image[a["image_id"]].append(a)
    records = []
    for im in data.images:
        anns = []
        for a in by_image.get(im["id"], []):
            bbox, area = rle_geometry(a["segmentation"])
            anns.append({
                "id": a["id"],
                "segmentation": {"size": [int(v) for v in a["segmentation"]["size"]],
                                 "counts": a["segmentation"]["counts"]},
                "bbox": bbox, "area": area,
                "predicted_iou": score(a["predicted_iou"]), "stability_score": score(a["stability_score"]),
                "crop_box": a["crop_box"] if a["crop_box"] is not None else [0, 0, im["width"], im["height"]],
                "point_coords": a["point_coords"] if a["point_coords"] is not None else [],
            })
        record = {"image": {"image_id": im["id"], "width": im["width"], "height": im["height"],
                            "file_name": im["file_name"]},
                  "annotations": anns}
        records.append((f"sa_{im['id']}.json", record))
    return records


def sa1b_zip_bytes(data: "ExportData") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, record in sa1b_records(data):
            zf.writestr(name, json.dumps(record, separators=(",", ":"), allow_nan=False))
    return buf.getvalue()
