"""COCO RLE validation and geometry with pycocotools."""
from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

from backend.core.errors import BadRequest


def validate_rle(segmentation: dict, height: int, width: int) -> tuple[dict, list[float], float]:
    """Check an RLE against the image size; return (normalised RLE, bbox XYWH, area)."""
    size = segmentation.get("size")
    counts = segmentation.get("counts")
    if not isinstance(size, (list, tuple)) or len(size) != 2:
        raise BadRequest("segmentation.size must be [height, width]")
    if [int(size[0]), int(size[1])] != [height, width]:
        raise BadRequest(f"segmentation size {list(size)} does not match the image size [{height}, {width}]")
    if not isinstance(counts, str) or not counts:
        raise BadRequest("segmentation.counts must be a non-empty compressed RLE string")
    # pycocotools' decoder trusts the run lengths (it writes past the buffer when they sum to more
    # than H*W and leaves pixels unset when less), so the sum is checked before decoding.
    total = _total_length(counts)
    if total != height * width:
        raise BadRequest(f"segmentation.counts covers {total} pixels, the image has {height * width}")
    rle = {"size": [height, width], "counts": counts.encode("ascii")}
    try:
        decoded = mask_utils.decode(rle)
    except Exception as exc:  # pycocotools raises plain Exceptions on malformed input
        raise BadRequest(f"segmentation.counts is not a valid COCO RLE: {exc}") from exc
    area = float(mask_utils.area(rle))
    if area <= 0:
        raise BadRequest("segmentation is empty (no foreground pixel)")
    bbox = [float(v) for v in mask_utils.toBbox(rle)]
    # Re-encode so the stored string is canonical.
    canon = mask_utils.encode(np.asfortranarray(decoded))
    return {"size": [height, width], "counts": canon["counts"].decode("ascii")}, bbox, area


def _total_length(counts: str) -> int:
    """Sum of the run lengths of a compressed COCO RLE string, read without decoding the mask.

    Only a bounds check: encoding and decoding masks is pycocotools' job.
    """
    total, i, n, runs = 0, 0, len(counts), []
    while i < n:
        x, k, more = 0, 0, True
        while more:
            if i >= n:
                raise BadRequest("segmentation.counts ends in the middle of a run length")
            c = ord(counts[i]) - 48
            if c < 0 or c > 63:
                raise BadRequest("segmentation.counts has a character outside the RLE alphabet")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            i += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        runs.append(x)
        if x < 0:
            raise BadRequest("segmentation.counts has a negative run length")
        total += x
    return total


def decode_mask(segmentation: dict) -> np.ndarray:
    rle = {"size": segmentation["size"], "counts": segmentation["counts"].encode("ascii")}
    return mask_utils.decode(rle).astype(bool)
