"""Maskloop's Segment Anything library: models, builders, predictor (automatic masks and ONNX export beside).

``build_sam(arch, checkpoint)`` builds ``vit_h``/``vit_l``/``vit_b``/``vit_t``/``lite``/``default``;
``SamPredictor`` is the interactive predictor; ``SamAutomaticMaskGenerator`` is loaded lazily.
"""
from __future__ import annotations

from typing import Any

from workers.sam.build import ARCHES, build_sam, save_checkpoint, sam_model_registry

__all__ = ["ARCHES", "SamAutomaticMaskGenerator", "SamPredictor", "build_sam", "sam_model_registry",
           "save_checkpoint"]


def __getattr__(name: str) -> Any:
    if name == "SamPredictor":
        from workers.sam.predictor import SamPredictor

        return SamPredictor
    if name == "SamAutomaticMaskGenerator":
        from workers.sam.automatic import SamAutomaticMaskGenerator

        return SamAutomaticMaskGenerator
    raise AttributeError(f"module 'workers.sam' has no attribute {name!r}")
