"""YOLO segmentation export (the Ultralytics ``-seg`` label format): a zip with ``data.yaml`` and one
``labels/<image stem>.txt`` per image.

Each line of a label file is one object: ``<class> x1 y1 x2 y2 …``, the outline of its mask as a
polygon in coordinates normalised to the image size (0–1). Classes are the project's labels in id
order (``data.yaml`` maps index → name); objects without a label get a class ``unlabeled``, added
last and only when needed. A mask in several pieces stays one object: its pieces' outlines are
joined into one polygon by a zero-width cut between their nearest points (the way COCO → YOLO
converters keep an instance whole). Holes are not represented (a polygon has no holes), and pieces
smaller than ``MIN_PIECE_AREA`` pixels are left out. Every image has a label file, empty when it has
no objects (a background image). The images themselves are not in the zip: put them in ``images/``
beside ``labels/`` with the same stems (``images.txt`` lists the file names).
"""
from __future__ import annotations

import io
import json
import zipfile
from collections import defaultdict
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np

from backend.services.rle import decode_mask

if TYPE_CHECKING:
    from backend.services.export import ExportData

# pieces of a mask smaller than this (pixels) are dropped from its outline
MIN_PIECE_AREA = 4
# how far (pixels) a simplified outline may stray from the mask's boundary
SIMPLIFY_PX = 0.7


def mask_polygon(mask: np.ndarray) -> list[tuple[float, float]]:
    """One closed outline (x, y) for a binary H×W mask, [] when empty. Its vertices are boundary
    pixels' indices, so drawing it back with the pixel-index convention (``cv2.fillPoly`` on the
    polygon scaled to the image size, as YOLO trainers do) gives the mask back, holes filled."""
    import cv2

    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    pieces = []
    for c in contours:
        # pixels of the piece, about: the outline's area, half its perimeter and one (a lone pixel: 1)
        if cv2.contourArea(c) + cv2.arcLength(c, True) / 2 + 1 < MIN_PIECE_AREA:
            continue
        c = cv2.approxPolyDP(c, SIMPLIFY_PX, True) if len(c) > 8 else c
        pieces.append(c.reshape(-1, 2).astype(np.float64))
    if not pieces:
        return []
    # the largest piece first, then each other piece joined at its point nearest to what came before
    pieces.sort(key=lambda p: -cv2.contourArea(p.astype(np.float32)))
    outline = pieces[0]
    for piece in pieces[1:]:
        d = ((outline[:, None, :] - piece[None, :, :]) ** 2).sum(-1)
        i, j = np.unravel_index(int(np.argmin(d)), d.shape)
        # walk the outline to point i, over to the piece's point j, around the piece, back to i
        around = np.concatenate([piece[j:], piece[:j + 1]])
        outline = np.concatenate([outline[:i + 1], around, outline[i:]])
    return [(float(x), float(y)) for x, y in outline]


def _label_names(images: list[dict[str, Any]]) -> dict[int, str]:
    """The label file name of each image: its file name's stem, with the image id added where two clash."""
    stems = {im["id"]: PurePosixPath(str(im["file_name"]).replace("\\", "/")).stem or f"image_{im['id']}"
             for im in images}
    count: dict[str, int] = defaultdict(int)
    for stem in stems.values():
        count[stem] += 1
    return {i: (f"{stem}_{i}" if count[stem] > 1 else stem) + ".txt" for i, stem in stems.items()}


def yolo_files(data: "ExportData") -> dict[str, str]:
    """The zip's files: name → text."""
    labels = sorted(data.labels, key=lambda label: label["id"])
    index = {label["id"]: k for k, label in enumerate(labels)}
    names = [label["name"] for label in labels]
    unlabeled = len(names)
    by_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for a in data.annotations:
        by_image[a["image_id"]].append(a)
    files: dict[str, str] = {}
    label_names = _label_names(data.images)
    used_unlabeled = False
    for im in data.images:
        w, h = float(im["width"]), float(im["height"])
        lines = []
        for a in by_image.get(im["id"], []):
            polygon = mask_polygon(decode_mask(a["segmentation"]))
            if len(polygon) < 3:
                continue
            cls = index.get(a["label_id"])
            if cls is None:
                cls, used_unlabeled = unlabeled, True
            coords = " ".join(f"{min(max(x / w, 0.0), 1.0):.6f} {min(max(y / h, 0.0), 1.0):.6f}" for x, y in polygon)
            lines.append(f"{cls} {coords}")
        files[f"labels/{label_names[im['id']]}"] = "".join(line + "\n" for line in lines)
    if used_unlabeled:
        names.append("unlabeled")
    # data.yaml in YAML's JSON-compatible flow style, so names with any characters stay valid
    yaml = ("# Maskloop export of project " + json.dumps(str(data.project["name"])) + "\n"
            "path: .\ntrain: images\nval: images\n"
            f"nc: {len(names)}\n"
            "names: {" + ", ".join(f"{k}: {json.dumps(n)}" for k, n in enumerate(names)) + "}\n")
    files["data.yaml"] = yaml
    files["images.txt"] = "".join(f"{im['file_name']}\n" for im in data.images)
    return files


def yolo_zip_bytes(data: "ExportData") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, text in yolo_files(data).items():
            zf.writestr(name, text)
    return buf.getvalue()
