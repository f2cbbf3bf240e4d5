"""Write frontend/tests/fixtures/refine_cases.json: the refinement of ``backend/services/mask_refine.py``
(guided filter, colour term, GrabCut pass) on small synthetic images, for the browser's copy to match.

    .venv/bin/python scripts/make_refine_fixture.py            # (re)write the fixture
    .venv/bin/python scripts/make_refine_fixture.py --check    # exit 1 when it is out of date

``tests/backend/test_mask_refine.py`` runs the check, and ``frontend/tests/refine.test.ts`` runs
``frontend/src/decoder/refine.ts`` on the same inputs: so the two implementations cannot drift apart.
"""
from __future__ import annotations

import argparse
import base64
from dataclasses import replace
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FIXTURE = ROOT / "frontend" / "tests" / "fixtures" / "refine_cases.json"


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()


def make_cases() -> list[dict]:
    from backend.services.mask_refine import RefineParams

    cases = []
    # (height, width, work_size, radius, eps, colour, bins): block-averaged with partial border blocks, and
    # full resolution; with the colour term (two bin counts) and without it
    for h, w, work, radius, eps, colour, bins in [(41, 53, 16, 2, 0.01, 3.0, 16), (30, 22, 64, 3, 0.02, 2.0, 8),
                                                  (64, 48, 20, 1, 0.005, 3.0, 16), (41, 53, 16, 2, 0.01, 0.0, 16)]:
        rng = np.random.default_rng(h * 1000 + w)
        yy, xx = np.mgrid[0:h, 0:w]
        inside = (yy - h * 0.45) ** 2 / (h * 0.3) ** 2 + (xx - w * 0.55) ** 2 / (w * 0.28) ** 2 < 1
        image = np.where(inside[..., None], [200, 60, 40], [40, 90, 160]).astype(np.float64)
        image = np.clip(image + rng.normal(0, 18, image.shape), 0, 255).astype(np.uint8)
        # smooth logits of a shifted, too-round ellipse: what a low-resolution decoder gives
        logits = (1 - ((yy - h * 0.5) ** 2 / (h * 0.33) ** 2 + (xx - w * 0.5) ** 2 / (w * 0.3) ** 2)) * 6
        logits = np.stack([logits, -logits + 2]).astype(np.float32)  # two candidates, as a multimask output
        params = RefineParams(work_size=work, radius=radius, eps=eps, colour=colour, colour_bins=bins, grabcut=0)
        cases.append(_case(image, logits, params))
    # the GrabCut pass (OpenCV in both languages, seeded alike): at a smaller size than the image and at
    # full size, with a positive and a negative click; the decoder's ellipse spills over into a
    # differently coloured neighbour that the pass takes out. Then a smaller scene (k: its scale) with
    # the pass cropped to the box around the mask and the positive click: a window resized to the
    # pass's size, and one kept at full size
    for h, w, work, radius, grabcut, k, crop in [(90, 120, 64, 3, 60, 1.0, 0.0), (48, 40, 32, 2, 240, 1.0, 0.0),
                                                 (120, 160, 64, 3, 30, 0.45, 0.5), (100, 140, 64, 3, 240, 0.4, 0.25)]:
        rng = np.random.default_rng(h * 7 + w)
        yy, xx = np.mgrid[0:h, 0:w]
        cy, cx = h * 0.5, w * 0.4
        inside = (yy - cy) ** 2 / (h * 0.28 * k) ** 2 + (xx - cx) ** 2 / (w * 0.22 * k) ** 2 < 1
        neighbour = (np.abs(yy - cy) < h * 0.2 * k) & (np.abs(xx - (cx + w * 0.35 * k)) < w * 0.12 * k)
        image = np.where(inside[..., None], [210, 70, 50], np.where(neighbour[..., None], [60, 170, 80],
                                                                   [50, 80, 150])).astype(np.float64)
        image = np.clip(image + rng.normal(0, 14, image.shape), 0, 255).astype(np.uint8)
        logits = (1 - ((yy - cy) ** 2 / (h * 0.3 * k) ** 2 + (xx - (cx + w * 0.15 * k)) ** 2 / (w * 0.35 * k) ** 2)) * 6
        logits = np.stack([logits, logits - 1.5]).astype(np.float32)
        points = [[cx, cy, 1], [cx + w * 0.36 * k, cy + h * 0.02 * k, 0]]
        params = RefineParams(work_size=work, radius=radius, eps=0.01, colour=3.0, grabcut=grabcut, grabcut_crop=crop)
        cases.append(_case(image, logits, params, points=points))
        if crop:  # the window is smaller than the image, so the crop is what the fixture tests
            from backend.services.mask_refine import GuidedRefiner

            box = GuidedRefiner(image, params).crop_box(logits[0] > 0, np.array(points)[:, :2], [1, 0])
            assert box is not None and (box[2] - box[0]) * (box[3] - box[1]) < 0.7 * h * w, box
    # a speck the window cannot keep on a flat image: refinement would erase it, the decoder's mask stays
    rng = np.random.default_rng(7)
    image = np.clip(128 + rng.normal(0, 3, (24, 30, 3)), 0, 255).astype(np.uint8)
    logits = np.full((2, 24, 30), -4.0, np.float32)
    logits[:, 10:12, 14:16] = 0.5
    cases.append(_case(image, logits, RefineParams(work_size=16, radius=3, eps=0.01, grabcut=0), erased=True))
    assert {c["choice"]["best"] for c in cases} == {0, 1}, "the refined rule must differ from the head's somewhere"
    return cases


def _case(image: np.ndarray, logits: np.ndarray, params, erased: bool = False,
          points: list[list[float]] | None = None) -> dict:
    from backend.services.mask_refine import GuidedRefiner

    h, w = image.shape[:2]
    refiner = GuidedRefiner(image, params)
    probs = np.stack([refiner.probabilities(m) for m in logits])
    pts = np.array(points or [], dtype=np.float64).reshape(-1, 3)
    masks = np.stack([refiner.refine(m, pts[:, :2], pts[:, 2].astype(int)) for m in logits])
    assert erased == (not (probs > 0.5).any()), "the erased case must be erased, the others not"
    if params.grabcut:  # the pass changed the refined mask, so the fixture tests it
        assert all((mk != (pr > 0.5)).any() for mk, pr in zip(masks, probs)), "the GrabCut pass changed nothing"
    rgba = np.concatenate([image, np.full((h, w, 1), 255, np.uint8)], axis=-1)
    # the first click's choice between the candidates: by the refined-candidate rule, and by the
    # decoder's IoU (candidate 0; the refined rule differs in some cases, checked in make_cases)
    scores = np.array([0.58, 0.55])
    best, _, ious = GuidedRefiner(image, replace(params, select="refined")).choose(logits, scores, pts[:, :2],
                                                                                   pts[:, 2].astype(int))
    return {
        "height": h, "width": w, "params": params.to_dict(), "erased": erased,
        "points": [{"x": x, "y": y, "label": int(label)} for x, y, label in pts.tolist()],
        "rgba": _b64(rgba), "logits": _b64(logits),
        "mask": _b64(masks.astype(np.uint8)),
        "scores": scores.tolist(), "choice": {"best": best, "ious": ious.tolist()},
        # pixels this close to the threshold may go either way in another float order
        "tie": _b64((np.abs(probs - 0.5) < 1e-6).astype(np.uint8)),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed fixture instead of writing it")
    args = ap.parse_args()
    text = json.dumps({"cases": make_cases()}, indent=1) + "\n"
    if args.check:
        if not FIXTURE.is_file() or FIXTURE.read_text() != text:
            print(f"{FIXTURE} is out of date: run scripts/make_refine_fixture.py", file=sys.stderr)
            return 1
        return 0
    FIXTURE.write_text(text)
    print(f"wrote {FIXTURE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
