"""Interactive prompt simulation for training, following the Segment Anything recipe.

For the M masks of one image, the first prompt is (with equal probability) one foreground point
drawn uniformly inside each mask, or each mask's bounding box with Gaussian noise on its corners
(standard deviation 10 % of the box side, at most ``max_box_noise`` pixels). Each later iteration
adds one point drawn uniformly from the error region of the previous prediction: positive in a
false negative, negative in a false positive. Some iterations add no point and only refine with the
previous low-resolution logits (given as the mask prompt in every iteration after the first).

All coordinates are (x, y) in the model's input frame (the image resized so its longest side is
``image_size``, before padding); error regions are computed on the 256×256 low-resolution grid.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

LOW_RES = 256


@dataclass
class PromptState:
    """The prompts of M masks of one image so far.

    ``coords`` M×K×2 float (x, y), ``labels`` M×K (1 positive, 0 negative), ``boxes`` M×4 (x0, y0,
    x1, y1) or None, ``mask_input`` M×1×256×256 logits of the previous step or None.
    """

    coords: torch.Tensor
    labels: torch.Tensor
    boxes: torch.Tensor | None = None
    mask_input: torch.Tensor | None = None

    @property
    def multimask(self) -> bool:
        """Ambiguous prompt (one point, nothing else): predict three masks, train the best."""
        return self.boxes is None and self.coords.shape[1] == 1 and self.mask_input is None


def plan_iterations(n: int, generator: torch.Generator) -> list[bool]:
    """For each of ``n`` iterations, whether it adds a new prompt (True) or only the mask (False).

    The first iteration always prompts; from 3 iterations on the last adds no point, and from 6 on
    one random middle iteration adds none either (SAM uses 11 iterations with two such).
    """
    if n < 1:
        raise ValueError(f"iterations per sample must be >= 1, got {n}")
    plan = [True] * n
    if n >= 3:
        plan[-1] = False
    if n >= 6:
        plan[1 + int(torch.randint(n - 2, (1,), generator=generator))] = False
    return plan


def _uniform_pixel(region: torch.Tensor, generator: torch.Generator) -> tuple[int, int] | None:
    """A uniformly drawn (row, col) of a True pixel of a 2-D bool tensor, or None if empty."""
    idx = torch.nonzero(region.flatten())
    if idx.numel() == 0:
        return None
    flat = int(idx[int(torch.randint(idx.shape[0], (1,), generator=generator))])
    return flat // region.shape[1], flat % region.shape[1]


def first_prompts(gt: torch.Tensor, generator: torch.Generator, *, box_prob: float = 0.5,
                  max_box_noise: float = 20.0) -> PromptState:
    """First prompt for each mask of one image: a point inside it, or a noisy bounding box.

    ``gt``: M×H×W bool masks in the model input frame (unpadded). The same kind of prompt is used
    for all M masks of an image so they can be decoded as one batch.
    """
    m, h, w = gt.shape
    if m == 0:
        raise ValueError("first_prompts needs at least one mask")
    use_box = float(torch.rand((1,), generator=generator)) < box_prob
    coords = torch.zeros(m, 1, 2)
    boxes = torch.zeros(m, 4)
    for i in range(m):
        ys, xs = torch.nonzero(gt[i], as_tuple=True)
        if ys.numel() == 0:
            raise ValueError(f"mask {i} is empty; cannot place a prompt")
        if use_box:
            box = torch.stack([xs.min(), ys.min(), xs.max(), ys.max()]).float()
            side = torch.stack([box[2] - box[0], box[3] - box[1]]).repeat(2)
            noise = torch.randn(4, generator=generator) * torch.clamp(0.1 * side, max=max_box_noise)
            box = box + noise
            box[0::2] = box[0::2].clamp(0, w - 1)
            box[1::2] = box[1::2].clamp(0, h - 1)
            lo, hi = torch.minimum(box[:2], box[2:]), torch.maximum(box[:2], box[2:])
            boxes[i] = torch.cat([lo, hi])
        else:
            j = int(torch.randint(ys.numel(), (1,), generator=generator))
            coords[i, 0] = torch.stack([xs[j], ys[j]]).float()
    if use_box:
        return PromptState(torch.zeros(m, 0, 2), torch.zeros(m, 0, dtype=torch.long), boxes=boxes)
    return PromptState(coords, torch.ones(m, 1, dtype=torch.long))


def error_points(gt_low: torch.Tensor, logits_low: torch.Tensor, generator: torch.Generator,
                 valid_low: torch.Tensor | None = None, image_size: int = 1024
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """One corrective click per mask, drawn uniformly from the error region.

    ``gt_low`` M×256×256 bool targets on the padded low-resolution grid, ``logits_low``
    M×256×256 previous logits, ``valid_low`` 256×256 bool (the unpadded image area).
    Returns ``coords`` M×1×2 (x, y in the input frame) and ``labels`` M×1 (1 for a click in a
    false negative, 0 for one in a false positive). A perfect prediction gets a positive click
    inside the object.
    """
    pred = logits_low > 0
    stride = image_size / gt_low.shape[-1]
    coords = torch.zeros(gt_low.shape[0], 1, 2)
    labels = torch.ones(gt_low.shape[0], 1, dtype=torch.long)
    for i in range(gt_low.shape[0]):
        error = gt_low[i] ^ pred[i]
        if valid_low is not None:
            error &= valid_low
        pixel = _uniform_pixel(error, generator) or _uniform_pixel(gt_low[i], generator) or (0, 0)
        row, col = pixel
        labels[i, 0] = int(bool(gt_low[i, row, col]))
        jitter = torch.rand(2, generator=generator) * stride
        coords[i, 0, 0] = col * stride + jitter[0]
        coords[i, 0, 1] = row * stride + jitter[1]
    return coords, labels


def add_points(state: PromptState, coords: torch.Tensor, labels: torch.Tensor) -> PromptState:
    """A new state with points M×1×2 / M×1 appended."""
    return PromptState(torch.cat([state.coords, coords], dim=1), torch.cat([state.labels, labels], dim=1),
                       state.boxes, state.mask_input)
