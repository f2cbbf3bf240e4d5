"""The ``Sam`` model: image encoder + prompt encoder + mask decoder, with SAM's pre/post-processing."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from workers.sam.modeling.mask_decoder import MaskDecoder
from workers.sam.modeling.prompt_encoder import PromptEncoder

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


class Sam(nn.Module):
    """Segment Anything model; state_dict keys ``image_encoder.*``, ``prompt_encoder.*``, ``mask_decoder.*``."""

    mask_threshold: float = 0.0
    image_format: str = "RGB"

    def __init__(self, image_encoder: nn.Module, prompt_encoder: PromptEncoder, mask_decoder: MaskDecoder,
                 pixel_mean: tuple[float, float, float] = PIXEL_MEAN,
                 pixel_std: tuple[float, float, float] = PIXEL_STD) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def img_size(self) -> int:
        """Side of the square encoder input (1024)."""
        return int(self.prompt_encoder.input_image_size[0])

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise 0–255 RGB and zero-pad bottom/right to img_size: C×H×W or B×C×H×W → same rank, padded."""
        x = (x - self.pixel_mean) / self.pixel_std
        h, w = x.shape[-2:]
        return F.pad(x, (0, self.img_size - w, 0, self.img_size - h))

    def postprocess_masks(self, masks: torch.Tensor, input_size: tuple[int, ...],
                          original_size: tuple[int, ...]) -> torch.Tensor:
        """Low-res logits B×K×256×256 → B×K×H×W logits at the original image size.

        Upsample to img_size, crop the ``input_size`` (resized, unpadded) region, resize to ``original_size``.
        """
        masks = F.interpolate(masks, (self.img_size, self.img_size), mode="bilinear", align_corners=False)
        masks = masks[..., : int(input_size[0]), : int(input_size[1])]
        return F.interpolate(masks, (int(original_size[0]), int(original_size[1])), mode="bilinear",
                             align_corners=False)

    @torch.no_grad()
    def forward(self, batched_input: list[dict[str, Any]], multimask_output: bool) -> list[dict[str, torch.Tensor]]:
        """End-to-end prediction for a list of images with prompts (the official batched interface).

        Each input dict: ``image`` 3×H×W (already resized, 0–255), ``original_size`` (H, W), optional
        ``point_coords`` B×N×2, ``point_labels`` B×N, ``boxes`` B×4, ``mask_inputs`` B×1×256×256 (all
        in the resized frame). Each output dict: ``masks`` B×K×H×W bool, ``iou_predictions`` B×K,
        ``low_res_logits`` B×K×256×256.
        """
        images = torch.stack([self.preprocess(item["image"]) for item in batched_input], dim=0)
        embeddings = self.image_encoder(images)
        outputs = []
        for item, emb in zip(batched_input, embeddings):
            points = (item["point_coords"], item["point_labels"]) if "point_coords" in item else None
            sparse, dense = self.prompt_encoder(points=points, boxes=item.get("boxes"),
                                                masks=item.get("mask_inputs"))
            low_res, iou = self.mask_decoder(image_embeddings=emb.unsqueeze(0),
                                             image_pe=self.prompt_encoder.get_dense_pe(),
                                             sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                             multimask_output=multimask_output)
            masks = self.postprocess_masks(low_res, item["image"].shape[-2:], item["original_size"])
            outputs.append({"masks": masks > self.mask_threshold, "iou_predictions": iou,
                            "low_res_logits": low_res})
        return outputs
