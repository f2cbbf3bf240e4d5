"""One robot annotator: clicks with the protocol's robot clicker until a mask is good enough.

Decoding mirrors the browser client (``workers.sam.onnx.OnnxDecoder`` builds the same feeds): the
embedding is fetched in the wire format, point coordinates are scaled to the resized-1024 frame, a
padding point (label −1) is appended, the first click is decoded without a mask prompt (multimask decoder when the
server provides one, best predicted IoU kept) and every later click feeds back the previous
low-resolution logits.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from backend.services.embedding_format import EmbeddingHeader
from backend.services.mask_refine import NO_REFINE, GuidedRefiner, RefineParams
from workers.evaluation.clicker import iou, next_click
from workers.sam.onnx import OnnxDecoder


@dataclass(frozen=True)
class CostModel:
    """Simulated annotator seconds, so seconds per mask compare across rounds and stages.

    A click costs the time to find the spot, click and look at the new mask; accepting a mask costs
    choosing the label and confirming; verifying a prefilled mask costs a look and one key; a mask
    the robot gives up on still costs its clicks plus a brush touch-up.
    """

    seconds_per_click: float = 3.0
    seconds_per_accept: float = 4.0
    seconds_per_verify: float = 2.0
    seconds_per_touch_up: float = 10.0

    def mask_seconds(self, clicks: int, reached_target: bool) -> float:
        return clicks * self.seconds_per_click + self.seconds_per_accept + (
            0.0 if reached_target else self.seconds_per_touch_up
        )


@dataclass
class MaskOutcome:
    mask: np.ndarray  # bool H×W
    clicks: int
    iou: float
    reached_target: bool
    predicted_iou: float
    ious: list[float] = field(default_factory=list)
    decode_seconds: float = 0.0


class OnnxDecoderSession:
    """The project's ONNX decoders (web-demo contract), single-mask and optional multimask."""

    def __init__(self, decoder_bytes: bytes, multimask_bytes: bytes | None = None, refine: RefineParams = NO_REFINE):
        self.single = OnnxDecoder(decoder_bytes)
        self.multi = OnnxDecoder(multimask_bytes) if multimask_bytes else None
        # how the browser refines this model's masks (GET /models/{id} → refine)
        self.refine = refine

    def refiner(self, image: np.ndarray, header: EmbeddingHeader) -> GuidedRefiner | None:
        """The per-image refinement the browser would build, or None (refinement off, or sizes differ)."""
        if self.refine.method != "guided" or tuple(image.shape[:2]) != tuple(header.orig_size):
            return None
        return GuidedRefiner(image, self.refine)

    def decode(
        self,
        embedding: np.ndarray,
        header: EmbeddingHeader,
        points_xy: np.ndarray,
        labels: np.ndarray,
        mask_input: np.ndarray | None,
        multimask: bool,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (masks K×H×W logits, iou K, low_res K×256×256) for clicks in original pixels."""
        feeds = OnnxDecoder.feeds(embedding, points_xy, labels, tuple(header.orig_size), mask_input=mask_input)
        decoder = self.multi if (multimask and self.multi is not None) else self.single
        masks, scores, low_res = decoder.run(feeds)
        return masks[0], scores[0], low_res[0]


def annotate_instance(
    decoder: OnnxDecoderSession,
    embedding: np.ndarray,
    header: EmbeddingHeader,
    gt: np.ndarray,
    *,
    iou_target: float = 0.85,
    max_clicks: int = 20,
    refiner: GuidedRefiner | None = None,
) -> MaskOutcome:
    """Click on ``gt`` (bool H×W) until the decoded mask reaches ``iou_target`` or the budget.

    With a ``refiner`` every decoded mask is refined with the image, as the browser does.
    """
    pred = np.zeros_like(gt, dtype=bool)
    clicked = np.zeros_like(gt, dtype=bool)
    points: list[tuple[float, float]] = []
    labels: list[int] = []
    low_res = None
    ious: list[float] = []
    best = (0.0, pred, 0.0)
    decode_seconds = 0.0
    for k in range(max_clicks):
        click = next_click(gt, pred, clicked=clicked)
        if click is None:
            break
        clicked[click.y, click.x] = True
        points.append((click.x, click.y))
        labels.append(click.label)
        t0 = time.perf_counter()
        masks, scores, lows = decoder.decode(
            embedding, header, np.asarray(points, np.float32), np.asarray(labels), low_res, multimask=(k == 0)
        )
        decode_seconds += time.perf_counter() - t0
        if refiner is not None:  # with the clicks, which the refinement's GrabCut pass holds fixed
            j, refined, _ = refiner.choose(masks, scores, np.asarray(points), np.asarray(labels))
            pred = refined[j]
        else:
            j = int(np.argmax(scores))
            pred = masks[j] > 0.0
        low_res = lows[j]
        ious.append(iou(gt, pred))
        if ious[-1] > best[0]:
            best = (ious[-1], pred, float(scores[j]))
        if ious[-1] >= iou_target:
            break
    # An annotator keeps the best mask seen (undo), like the browser's undo history allows.
    return MaskOutcome(
        mask=best[1],
        clicks=len(ious),
        iou=best[0],
        reached_target=best[0] >= iou_target,
        predicted_iou=best[2],
        ious=ious,
        decode_seconds=decode_seconds,
    )
