"""Decoder masks from wire-format embeddings (float16, int8) agree with those from float32.

The embedding comes from the model's own encoder on a real-looking image, goes through
``encode_embedding``/``decode_embedding`` and is decoded by ``SamPredictor`` as the workers do.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.services.embedding_format import decode_embedding, encode_embedding
from workers.sam.build import build_sam
from workers.sam.predictor import SamPredictor


@pytest.fixture(scope="module")
def encoded():
    torch.manual_seed(0)
    model = build_sam("lite", device="cpu")
    yy, xx = np.mgrid[0:96, 0:128]
    image = np.stack([(xx * 2) % 256, (yy * 3) % 256, ((xx - 64) ** 2 + (yy - 48) ** 2 < 600) * 200], -1)
    predictor = SamPredictor(model)
    predictor.set_image(image.astype(np.uint8))
    return predictor, predictor.get_image_embedding().numpy()


def _masks(predictor: SamPredictor) -> np.ndarray:
    rng = np.random.default_rng(1)
    coords = torch.as_tensor(rng.random((24, 2, 2)) * [1024, 768], dtype=torch.float32)
    labels = torch.as_tensor(rng.integers(0, 2, (24, 2)), dtype=torch.float32)
    with torch.no_grad():
        masks, _, _ = predictor.predict_torch(coords, labels, multimask_output=True)
    return masks.flatten(2).numpy()


@pytest.mark.parametrize("dtype,min_iou", [("float32", 1.0), ("float16", 0.995), ("int8", 0.98)])
def test_wire_dtypes_keep_the_masks(encoded, dtype, min_iou):
    predictor, emb = encoded
    reference = _masks(predictor)
    assert reference.any(axis=-1).mean() > 0.5  # the comparison is about non-trivial masks
    blob = encode_embedding(emb, model_version="t", orig_size=(96, 128), input_size=(768, 1024), dtype=dtype)
    back, header = decode_embedding(blob)
    predictor.set_embedding(back, tuple(header.orig_size), tuple(header.input_size))
    try:
        got = _masks(predictor)
    finally:
        predictor.set_embedding(emb, (96, 128))
    union = (got | reference).sum(-1)
    iou = np.where(union > 0, (got & reference).sum(-1) / np.maximum(union, 1), 1.0)
    assert iou.mean() >= min_iou, (dtype, iou.mean(), iou.min())
