"""Edge-aware refinement of decoded masks: a guided filter with the image as guide.

The decoder predicts masks at 256×256 per 1024 px (about 2.5 original pixels per logit on a 640 px
photo) from 64×64 image tokens, so its edges are smooth curves that cut across the object's real
outline. The guided filter (He, Sun and Tang, 2010) fits, in every window, the mask probability as a
linear function of the pixel colours and averages those fits, so the output follows the image's edges
wherever the colours allow it. It needs no training and costs a few box filters.

Before the filter, a colour term moves each grid cell's logit by how much likelier its colour is
inside the decoder's mask than outside it (the log-ratio of two colour histograms of the image, the
foreground weighted by the decoder's probability and the background by its complement, as in
GrabCut's colour models). The decoder's masks often stop short of an object's far parts or spill into
a neighbour; where the object's colours differ from its surroundings the colour term pulls the mask's
uncertain cells the right way. The term is clipped, so it cannot overrule a confident decoder.

It runs on a working grid (the image block-averaged by an integer factor so the long side is at
most ``work_size``), and the averaged linear coefficients are interpolated back to full resolution
and applied to the full-resolution colours, as in the "fast guided filter". Everything that depends
only on the image (block means, window statistics of the colours, their inverse covariances) is
computed once per image by ``GuidedRefiner``; a click costs the block means of the logits, box filters
of the grid's probabilities, a 3×3 product per grid cell, more box filters, and the final
interpolation (along rows, then between rows) with a dot product per pixel.

Last, when ``grabcut`` is set, the refined mask seeds GrabCut (Rother, Kolmogorov and Blake, 2004;
OpenCV's implementation) in a window around the mask and the positive clicks (``grabcut_crop`` times
the box's longer side added on every side; 0 = the whole image), at ``grabcut`` pixels on the
window's long side: the mask's inside is "probably foreground", the rest "probably background", the
clicks are discs of sure foreground or background; GrabCut fits a colour mixture model to each side
and cuts the image graph, ``grabcut_iters`` times. Its labels are taken back to full resolution
(nearest pixel; background outside the window). The decoder decides where the object roughly is;
GrabCut grows the mask to the object's colour-coherent outline and drops what is background by
colour. OpenCV's GrabCut draws its colour models' starting centres at random, so the
random generator is seeded before every call: the same mask and clicks always give the same result,
in the browser (OpenCV.js) as here.

The browser runs the same arithmetic (``frontend/src/decoder/refine.ts``); the evaluation and the
simulated annotators use this module, so their numbers describe what annotators see. numpy only
(no torch), so the API side could use it too.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

#: seed of OpenCV's random generator before every GrabCut call (the browser uses the same)
GRABCUT_SEED = 12345

#: The refined-candidate rule (``select="refined"``): the predicted IoU of a refined candidate mask is
#: w0 + w1·agreement + w2·ln(raw area + 1e-4) + w3·ln(refined area + 1e-4) + w4·decoder IoU, where
#: agreement is the IoU of the decoder's mask and its refined mask and areas are fractions of the
#: image. Fitted (least squares, ridge 1) by ``benchmarks/fit_candidate_rule.py`` on the first clicks
#: of 400 train objects of coco-mval with the shipped default model and the default refinement.
SELECT_WEIGHTS = (-0.202, 0.522, -0.110, 0.054, 0.976)


@dataclass(frozen=True)
class RefineParams:
    """How masks are refined; ``method`` "guided" or "none".

    ``work_size``: long side of the working grid (the image is block-averaged by
    ``ceil(long_side / work_size)``); ``radius``: window radius on that grid (so the radius in original
    pixels grows with the image); ``eps``: regularisation (larger = smoother, less edge-following);
    ``colour``: weight of the colour term added to the logits (0 turns it off); ``colour_bins``:
    histogram bins per RGB channel; ``colour_clip``: bound on the colour log-likelihood ratio;
    ``grabcut``: long side in pixels of the GrabCut pass seeded by the refined mask (0 turns it off),
    ``grabcut_iters`` its iterations, ``grabcut_disc`` the radius (at that size) of the clicks' discs,
    ``grabcut_crop`` the margin of its window around the mask (times the box's longer side; 0: the
    whole image). ``select``: which of a first click's candidates is shown first, "head" (the
    decoder's predicted IoU; only that candidate is refined) or "refined" (every candidate is refined
    and ranked by its predicted IoU after refinement, ``select_weights``, see ``SELECT_WEIGHTS``).
    Chosen on train-split images of coco-mval (``benchmarks/bench_refine.py``).
    """

    method: str = "guided"
    work_size: int = 320
    radius: int = 12
    eps: float = 0.01
    colour: float = 3.0
    colour_bins: int = 16
    colour_clip: float = 3.0
    grabcut: int = 200
    grabcut_iters: int = 2
    grabcut_disc: int = 5
    grabcut_crop: float = 0.75
    select: str = "head"
    select_weights: tuple[float, ...] = SELECT_WEIGHTS

    def __post_init__(self) -> None:
        object.__setattr__(self, "select_weights", tuple(float(w) for w in self.select_weights))
        if self.select not in ("refined", "head"):
            raise ValueError(f"unknown candidate selection {self.select!r}: use 'refined' or 'head'")
        if len(self.select_weights) != 5 or not all(math.isfinite(w) for w in self.select_weights):
            raise ValueError("select_weights must be 5 finite numbers (intercept, agreement, ln raw area, "
                             "ln refined area, decoder IoU)")
        if self.method not in ("guided", "none"):
            raise ValueError(f"unknown mask refinement {self.method!r}: use 'guided' or 'none'")
        if self.work_size < 8 or self.radius < 1 or not self.eps > 0:
            raise ValueError("mask refinement needs work_size >= 8, radius >= 1 and eps > 0")
        if self.colour < 0 or not 2 <= self.colour_bins <= 64 or not self.colour_clip > 0:
            raise ValueError("mask refinement needs colour >= 0, 2 <= colour_bins <= 64 and colour_clip > 0")
        if not (self.grabcut == 0 or 16 <= self.grabcut <= 1024) or not 1 <= self.grabcut_iters <= 10 \
                or not 1 <= self.grabcut_disc <= 32 or not 0 <= self.grabcut_crop <= 4:
            raise ValueError("mask refinement needs grabcut 0 (off) or 16..1024, grabcut_iters 1..10, "
                             "grabcut_disc 1..32 and grabcut_crop 0..4")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> RefineParams:
        if not data:
            return cls(method="none")
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


NO_REFINE = RefineParams(method="none")


def configured_refine() -> RefineParams:
    """The refinement this installation applies (``MASKLOOP_MASK_REFINE``: guided | none,
    ``MASKLOOP_MASK_REFINE_COLOUR``: the colour term's weight, ``MASKLOOP_MASK_REFINE_GRABCUT``: the
    GrabCut pass's size, 0 = off)."""
    from backend.core.config import get_settings

    return settings_refine(get_settings())


def settings_refine(settings) -> RefineParams:
    """The refinement a settings object describes."""
    return RefineParams(method=settings.mask_refine, colour=settings.mask_refine_colour,
                        grabcut=settings.mask_refine_grabcut, grabcut_crop=settings.mask_refine_grabcut_crop,
                        select=settings.mask_refine_select)


def refined_iou(raw: np.ndarray, refined: np.ndarray, decoder_iou: float,
                weights: tuple[float, ...] = SELECT_WEIGHTS) -> float:
    """Predicted IoU of the refined mask ``refined`` of the decoder's mask ``raw`` (bool, same shape),
    whose decoder-predicted IoU is ``decoder_iou`` (the rule of ``SELECT_WEIGHTS``), in [0, 1]."""
    n = raw.size
    a = int(np.count_nonzero(raw))
    r = int(np.count_nonzero(refined))
    union = int(np.count_nonzero(raw | refined))
    agree = 1.0 if union == 0 else int(np.count_nonzero(raw & refined)) / union
    w0, w1, w2, w3, w4 = weights
    value = w0 + w1 * agree + w2 * math.log(a / n + 1e-4) + w3 * math.log(r / n + 1e-4) + w4 * float(decoder_iou)
    return min(max(value, 0.0), 1.0)


def _box_mean(x: np.ndarray, r: int) -> np.ndarray:
    """Mean over the (2r+1)² window around every cell, the window clipped to the grid (axes 0, 1)."""
    out = x
    for axis in (1, 0):  # along rows, then down columns (as the browser's boxMean)
        n = out.shape[axis]
        c = np.cumsum(out, axis=axis)
        zero = np.zeros_like(np.take(c, [0], axis=axis))
        c = np.concatenate([zero, c], axis=axis)  # c[i] = sum of the first i cells
        hi = np.minimum(np.arange(n) + r + 1, n)
        lo = np.maximum(np.arange(n) - r, 0)
        shape = [1] * out.ndim
        shape[axis] = n
        out = (np.take(c, hi, axis=axis) - np.take(c, lo, axis=axis)) / (hi - lo).reshape(shape)
    return out


def _block_sums(x: np.ndarray, s: int, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """Sums of s×s blocks (axes 0, 1) in ``dtype``, and the gh×gw count of pixels in each block
    (blocks cut by the border hold fewer)."""
    h, w = x.shape[:2]
    gh, gw = -(-h // s), -(-w // s)
    pad = [(0, gh * s - h), (0, gw * s - w)] + [(0, 0)] * (x.ndim - 2)
    sums = np.pad(x.astype(dtype), pad).reshape(gh, s, gw, s, *x.shape[2:]).sum(axis=(1, 3))
    rows = np.minimum(np.arange(1, gh + 1) * s, h) - np.arange(gh) * s
    cols = np.minimum(np.arange(1, gw + 1) * s, w) - np.arange(gw) * s
    return sums, np.outer(rows, cols)


def _block_mean(x: np.ndarray, s: int) -> np.ndarray:
    """Average s×s blocks (axes 0, 1); blocks cut by the border average their own pixels."""
    if s == 1:
        return x.astype(np.float64)
    sums, counts = _block_sums(x, s, np.float64)
    return sums / counts.astype(np.float64).reshape(*counts.shape, *([1] * (x.ndim - 2)))


def _colour_bins(image: np.ndarray, s: int, bins: int) -> np.ndarray:
    """The colour histogram bin of every grid cell, from its block's exact integer channel sums.

    Bin of a channel: floor(sum · bins / (255 · count)), clamped to bins − 1; integer arithmetic, so the
    browser's copy gets the very same bins (a float mean could land either side of a bin edge).
    """
    sums, counts = _block_sums(image, s, np.int64)
    q = np.minimum(sums * bins // (255 * counts[..., None]), bins - 1)
    return (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _pass_size(w: int, h: int, size: int) -> tuple[int, int]:
    """(width, height) of a ``w``×``h`` window at ``size`` pixels on its long side, never enlarged
    (``passSize`` in the browser)."""
    s = min(size / max(w, h), 1.0)
    return max(1, math.floor(w * s + 0.5)), max(1, math.floor(h * s + 0.5))


def nearest_resize(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """``mask`` (h×w) at ``height×width`` by nearest neighbour: each pixel takes the source pixel under its
    centre (the browser's ``upsampleMask`` does the same)."""
    sh, sw = mask.shape[:2]
    rows = np.minimum(np.floor((np.arange(height) + 0.5) * sh / height).astype(np.int64), sh - 1)
    cols = np.minimum(np.floor((np.arange(width) + 0.5) * sw / width).astype(np.int64), sw - 1)
    return mask[rows][:, cols]


def _interp_axis(n_full: int, n_grid: int, s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear taps (lower index, upper index, upper weight) from grid cells to full pixels.

    Pixel i's centre lies at grid coordinate (i + 0.5) / s − 0.5, clamped to [0, n_grid − 1].
    """
    pos = np.clip((np.arange(n_full) + 0.5) / s - 0.5, 0.0, n_grid - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n_grid - 1)
    return lo, hi, pos - lo


class GuidedRefiner:
    """Per-image state of the guided filter; ``refine(logits)`` → bool mask of the image's size."""

    def __init__(self, image: np.ndarray, params: RefineParams = RefineParams()):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"the guide must be an H×W×3 RGB image, got shape {image.shape}")
        if params.method != "guided":
            raise ValueError("GuidedRefiner needs method='guided'")
        self.params = params
        h, w = image.shape[:2]
        self.size = (h, w)
        self.scale = max(1, math.ceil(max(h, w) / params.work_size))
        # full resolution, for the last step; float32 as in the browser (that pass is memory-bound)
        self.image = image.astype(np.float32) / np.float32(255.0)
        guide = _block_mean(self.image, self.scale)  # gh×gw×3
        r = params.radius
        self.guide = guide
        self.mean_i = _box_mean(guide, r)
        cov = np.empty(guide.shape[:2] + (3, 3))
        for a in range(3):
            for b in range(a, 3):
                v = _box_mean(guide[..., a] * guide[..., b], r) - self.mean_i[..., a] * self.mean_i[..., b]
                cov[..., a, b] = v
                cov[..., b, a] = v
        cov += params.eps * np.eye(3)
        self.inv_cov = np.linalg.inv(cov)
        # colour histogram bin of each grid cell, for the colour term
        self.bins = _colour_bins(image, self.scale, params.colour_bins).ravel() if params.colour > 0 else None
        self.rows = _interp_axis(h, guide.shape[0], self.scale)
        self.cols = _interp_axis(w, guide.shape[1], self.scale)
        self.gc_image: np.ndarray | None = None
        self.rgb: np.ndarray | None = None
        if params.grabcut and params.grabcut_crop > 0:  # the pass crops around each mask
            self.rgb = np.ascontiguousarray(image, dtype=np.uint8)
        elif params.grabcut:
            import cv2

            gc_size = _pass_size(w, h, params.grabcut)
            self.gc_image = np.ascontiguousarray(cv2.resize(np.ascontiguousarray(image, dtype=np.uint8), gc_size,
                                                            interpolation=cv2.INTER_AREA))

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Refined foreground probability (not clipped) at full resolution from full-size logits."""
        if logits.shape != self.size:
            raise ValueError(f"logits {logits.shape} do not match the image {self.size}")
        # the probability of each grid cell: the sigmoid of its block's mean logit (plus the colour term)
        z = np.clip(_block_mean(logits, self.scale), -40.0, 40.0)
        if self.bins is not None:
            z = z + self.params.colour * self.colour_term(_sigmoid(z))
        return self.filter(_sigmoid(z))

    def filter(self, p: np.ndarray) -> np.ndarray:
        """The guided filter of grid probabilities ``p`` (gh×gw), at full resolution (not clipped)."""
        r = self.params.radius
        mean_p = _box_mean(p, r)
        cov_ip = _box_mean(self.guide * p[..., None], r) - self.mean_i * mean_p[..., None]
        a = np.einsum("hwij,hwj->hwi", self.inv_cov, cov_ip)
        b = mean_p - np.einsum("hwi,hwi->hw", a, self.mean_i)
        coef = np.concatenate([_box_mean(a, r), _box_mean(b, r)[..., None]], axis=-1)  # gh×gw×4
        (r0, r1, wr), (c0, c1, wc) = self.rows, self.cols
        # along every grid row to each column, then between rows (the browser's order)
        rows = coef[:, c0] + wc[None, :, None] * (coef[:, c1] - coef[:, c0])
        full = rows[r0] + wr[:, None, None] * (rows[r1] - rows[r0])
        image = self.image.astype(np.float64)
        return (full[..., 0] * image[..., 0] + full[..., 1] * image[..., 1] + full[..., 2] * image[..., 2]
                + full[..., 3])

    def colour_term(self, fg: np.ndarray) -> np.ndarray:
        """Per grid cell, log P(colour | inside) − log P(colour | outside), clipped to ±colour_clip.

        ``fg``: the decoder's probability per grid cell. The two histograms count every cell's bin
        with weight fg and 1 − fg; one pseudo-count per bin keeps unseen colours neutral. Sums run in
        cell order, as in the browser, so both sides round alike.
        """
        k = self.params.colour_bins ** 3
        fg = fg.ravel()
        hist_in = np.bincount(self.bins, weights=fg, minlength=k)
        hist_out = np.bincount(self.bins, weights=1.0 - fg, minlength=k)
        total_in, total_out = np.cumsum(fg)[-1], np.cumsum(1.0 - fg)[-1]
        ratio = np.log((hist_in + 1.0) / (total_in + k)) - np.log((hist_out + 1.0) / (total_out + k))
        c = self.params.colour_clip
        return np.clip(ratio, -c, c)[self.bins].reshape(self.guide.shape[:2])

    def refine(self, logits: np.ndarray, points: np.ndarray | None = None,
               labels: np.ndarray | None = None) -> np.ndarray:
        """The refined mask of full-size ``logits``; ``points`` N×2 (x, y in pixels) and ``labels`` N
        (1 positive, 0 negative) are the prompt's clicks, which the GrabCut pass (if on) holds fixed.

        When refinement would erase a mask the decoder found (an object thinner than the window, in
        colours the window cannot tell apart), the decoder's own mask is kept; when GrabCut would
        erase the refined mask, the refined mask is kept."""
        refined = self.probabilities(logits) > 0.5
        if not refined.any():
            return logits > 0
        if self.gc_image is not None or self.rgb is not None:
            return self.grabcut(refined, points, labels)
        return refined

    def choose(self, logits: np.ndarray, scores: np.ndarray, points: np.ndarray | None = None,
               labels: np.ndarray | None = None) -> tuple[int, list[np.ndarray | None], np.ndarray]:
        """Which of the candidates ``logits`` (K×H×W, full size) to show first, with the decoder's
        predicted IoUs ``scores`` (K): returns (index, refined masks, predicted IoUs). With ``select``
        "head" only the candidate of the highest decoder IoU is refined (the others are None) and the
        IoUs are the decoder's; with "refined" (and K > 1) all are refined and ranked by
        ``refined_iou``. Ties go to the lowest index."""
        scores = np.asarray(scores, dtype=np.float64).ravel()
        if self.params.select == "head" or len(logits) == 1:
            best = int(np.argmax(scores))
            masks: list[np.ndarray | None] = [None] * len(logits)
            masks[best] = self.refine(logits[best], points, labels)
            return best, masks, scores
        masks = [self.refine(lg, points, labels) for lg in logits]
        ious = np.array([refined_iou(lg > 0, m, s, self.params.select_weights)
                         for lg, m, s in zip(logits, masks, scores)])
        return int(np.argmax(ious)), masks, ious

    def crop_box(self, mask: np.ndarray, points: np.ndarray | None = None,
                 labels: np.ndarray | None = None) -> tuple[int, int, int, int] | None:
        """The GrabCut pass's window (x0, y0, x1, y1; x1, y1 exclusive): the box around ``mask`` and the
        positive clicks, widened on every side by ``grabcut_crop`` times its longer side (rounded up)
        and clipped to the image; None when there is neither mask nor positive click."""
        h, w = self.size
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        xs, ys = list(cols[[0, -1]]) if cols.size else [], list(rows[[0, -1]]) if rows.size else []
        if points is not None and labels is not None:
            for (x, y), label in zip(np.asarray(points, dtype=np.float64).reshape(-1, 2), np.asarray(labels).ravel()):
                if label == 1:
                    xs.append(min(max(math.floor(x), 0), w - 1))
                    ys.append(min(max(math.floor(y), 0), h - 1))
        if not xs:
            return None
        x0, x1, y0, y1 = int(min(xs)), int(max(xs)) + 1, int(min(ys)), int(max(ys)) + 1
        m = math.ceil(self.params.grabcut_crop * max(x1 - x0, y1 - y0))
        return max(0, x0 - m), max(0, y0 - m), min(w, x1 + m), min(h, y1 + m)

    def grabcut(self, mask: np.ndarray, points: np.ndarray | None = None,
                labels: np.ndarray | None = None) -> np.ndarray:
        """GrabCut seeded by ``mask`` (H×W bool) and the clicks (see the module docstring); ``mask``
        itself when GrabCut has nothing to work with or finds nothing. With ``grabcut_crop`` the pass
        sees only ``crop_box``'s window (at ``grabcut`` pixels on its long side, never enlarged), and
        everything outside it is background."""
        import cv2

        h, w = self.size
        if self.rgb is not None:
            box = self.crop_box(mask, points, labels)
            if box is None:
                return mask
            x0, y0, x1, y1 = box
            cw, ch = x1 - x0, y1 - y0
            size = _pass_size(cw, ch, self.params.grabcut)
            window = np.ascontiguousarray(self.rgb[y0:y1, x0:x1])
            small = window if size == (cw, ch) else cv2.resize(window, size, interpolation=cv2.INTER_AREA)
        else:
            assert self.gc_image is not None
            x0, y0, x1, y1, cw, ch = 0, 0, w, h, w, h
            small = self.gc_image
        gh_c, gw_c = small.shape[:2]
        region = np.ascontiguousarray(mask[y0:y1, x0:x1], dtype=np.float32)
        inside = (region > 0.5) if (gw_c, gh_c) == (cw, ch) else \
            cv2.resize(region, (gw_c, gh_c), interpolation=cv2.INTER_AREA) > 0.5
        seeds = np.where(inside, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
        if points is not None and labels is not None:
            sx, sy = gw_c / cw, gh_c / ch
            for (x, y), label in zip(np.asarray(points, dtype=np.float64).reshape(-1, 2), np.asarray(labels).ravel()):
                if label not in (0, 1):
                    continue
                centre = (math.floor((x - x0) * sx + 0.5), math.floor((y - y0) * sy + 0.5))
                cv2.circle(seeds, centre, self.params.grabcut_disc, int(cv2.GC_FGD if label == 1 else cv2.GC_BGD), -1)
        fg = (seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)
        if not fg.any() or fg.all():
            return mask
        cv2.setRNGSeed(GRABCUT_SEED)
        try:
            cv2.grabCut(small, seeds, None, np.zeros((1, 65)), np.zeros((1, 65)), self.params.grabcut_iters,
                        cv2.GC_INIT_WITH_MASK)
        except cv2.error:  # a degenerate input OpenCV refuses: the refined mask stands (as in the browser)
            return mask
        cut = (seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)
        # GrabCut's labels taken to full resolution: each pixel takes the label of the pass's pixel under
        # its centre (the guided filter again would blur the cut: 8.75 / 12.68 NoC@85/90 on 40 train
        # images against 7.95 / 12.10 without it)
        window_cut = nearest_resize(cut, ch, cw)
        if not window_cut.any():
            return mask
        if (cw, ch) == (w, h):
            return window_cut
        snapped = np.zeros((h, w), dtype=bool)
        snapped[y0:y1, x0:x1] = window_cut
        return snapped


class RefinedPredictor:
    """Wraps a predictor (``SamPredictor``, ``OnnxPredictor``) so its masks come out refined.

    Scores and low-resolution logits pass through unchanged (the decoder is fed its own logits back).
    """

    def __init__(self, predictor, params: RefineParams = RefineParams()):
        self.predictor = predictor
        self.params = params
        self.refiner: GuidedRefiner | None = None
        self.predicted_ious: np.ndarray | None = None  # of the last predict's masks (see ``choose``)
        self.name = getattr(predictor, "name", type(predictor).__name__)

    def __getattr__(self, name):  # model, mask_threshold, ... of the wrapped predictor
        return getattr(self.predictor, name)

    def set_image(self, image: np.ndarray, *args, **kwargs) -> None:
        self.predictor.set_image(image, *args, **kwargs)
        self.refiner = GuidedRefiner(image, self.params)

    def predict(self, point_coords: np.ndarray | None = None, point_labels: np.ndarray | None = None,
                *args, return_logits: bool = False, **kwargs):
        if self.refiner is None:
            raise RuntimeError("call set_image before predict")
        logits, scores, low_res = self.predictor.predict(point_coords, point_labels, *args, return_logits=True,
                                                         **kwargs)
        logits = np.asarray(logits)
        masks = np.stack([self.refiner.refine(m, point_coords, point_labels) for m in logits])
        self.predicted_ious = np.asarray(scores, dtype=np.float64).ravel()
        if len(masks) > 1 and self.params.select == "refined":
            self.predicted_ious = np.array([refined_iou(lg > 0, m, s, self.params.select_weights)
                                            for lg, m, s in zip(logits, masks, self.predicted_ious)])
        if return_logits:  # ±1 "logits" of the refined masks, so a caller thresholding at 0 gets them
            return np.where(masks, 1.0, -1.0).astype(np.float32), scores, low_res
        return masks, scores, low_res


    def choose(self, scores: np.ndarray) -> int:
        """The candidate of the last ``predict`` to show first: the highest decoder IoU (``scores``)
        or, with ``select`` "refined", the highest predicted IoU after refinement."""
        ious = self.predicted_ious if self.predicted_ious is not None else np.asarray(scores).ravel()
        return int(np.argmax(ious))


def refine_predictor(predictor, params: RefineParams | None):
    """``predictor`` wrapped with refinement, or as it is when ``params`` says none."""
    if params is None or params.method == "none":
        return predictor
    return RefinedPredictor(predictor, params)
