"""Reading the annotator's canvas from a test: image-pixel ↔ page coordinates under the initial
fit-to-canvas view, and which image pixels are tinted by an overlay compared with a baseline."""
from __future__ import annotations

import numpy as np

_FIT = """
const c = document.getElementById('stage');
const s = Math.min(c.width / W, c.height / H);
const ox = (c.width - W * s) / 2, oy = (c.height - H * s) / 2;
"""

IMAGE_TO_CLIENT = "([W, H, x, y]) => {" + _FIT + """
  const r = c.getBoundingClientRect();
  return [r.left + (ox + x * s) * r.width / c.width, r.top + (oy + y * s) * r.height / c.height];
}"""

_SAMPLE = _FIT + """
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const rgb = new Uint8Array(W * H * 3);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
    const cx = Math.floor(ox + (x + 0.5) * s), cy = Math.floor(oy + (y + 0.5) * s);
    const i = (cy * c.width + cx) * 4, j = (y * W + x) * 3;
    rgb[j] = d[i]; rgb[j + 1] = d[i + 1]; rgb[j + 2] = d[i + 2];
  }
"""

TAKE_BASELINE = "([W, H]) => {" + _SAMPLE + " window.__e2eBaseline = rgb; return true; }"

SAMPLE_RGB = "([W, H]) => {" + _SAMPLE + " return Array.from(rgb); }"

TINTED = "([W, H]) => {" + _SAMPLE + """
  const b = window.__e2eBaseline; let out = '';
  for (let k = 0; k < W * H; k++) {
    const j = 3 * k;
    out += (Math.abs(rgb[j] - b[j]) + Math.abs(rgb[j + 1] - b[j + 1]) + Math.abs(rgb[j + 2] - b[j + 2]) > 24) ? '1' : '0';
  }
  return out;
}"""


def image_to_client(page, size: tuple[int, int], x: float, y: float) -> tuple[float, float]:  # noqa: ANN001
    """Page coordinates of image pixel (x, y); size is (W, H)."""
    cx, cy = page.evaluate(IMAGE_TO_CLIENT, [size[0], size[1], x, y])
    return cx, cy


def canvas_rgb(page, size: tuple[int, int]) -> np.ndarray:  # noqa: ANN001
    """H×W×3 uint8: the canvas colour at the centre of every image pixel (initial fit view)."""
    values = page.evaluate(SAMPLE_RGB, [size[0], size[1]])
    return np.asarray(values, np.uint8).reshape(size[1], size[0], 3)


def take_baseline(page, size: tuple[int, int]) -> None:  # noqa: ANN001
    page.evaluate(TAKE_BASELINE, [size[0], size[1]])


def tinted_mask(page, size: tuple[int, int]) -> np.ndarray:  # noqa: ANN001
    """H×W bool: image pixels whose canvas colour differs from the baseline (an overlay is drawn there)."""
    bits = page.evaluate(TINTED, [size[0], size[1]])
    return (np.frombuffer(bits.encode("ascii"), np.uint8) == ord("1")).reshape(size[1], size[0])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0
