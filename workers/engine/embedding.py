"""Compute an image embedding with the encoder and store it in both wire-format dtypes."""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from backend.services.embedding_format import encode_embedding
from backend.storage import keys

logger = logging.getLogger(__name__)

STORED_DTYPES = ("float16", "int8")


@dataclass
class EmbeddingResult:
    """Keys written per dtype, and the sizes the browser needs."""

    keys: dict[str, str]
    orig_size: tuple[int, int]
    input_size: tuple[int, int]
    nbytes: dict[str, int]


def autocast_for(model: Any, mode: str | None = None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``mode`` ("fp16" / "bf16", default: the ``autocast`` setting) when the
    model is on CUDA; a no-op on a CPU or with "none"."""
    import torch

    from workers.sam.predictor import cuda_autocast

    if mode is None:
        from backend.core.config import get_settings

        mode = get_settings().autocast
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mode)
    return cuda_autocast(next(model.parameters()).device, dtype)


def compute_embedding(model: Any, image: np.ndarray) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
    """Run the image encoder on an ``H×W×3`` uint8 RGB image (through ``SamPredictor``).

    Returns the float32 embedding ``1×256×64×64``, ``orig_size`` (H, W) and ``input_size``
    (h, w after resizing the longest side to the encoder's input size, before padding).
    """
    import torch

    from workers.sam import SamPredictor

    predictor = SamPredictor(model)
    with torch.inference_mode(), autocast_for(model):
        predictor.set_image(image)
        emb = predictor.get_image_embedding()
    arr = emb.detach().float().cpu().numpy()
    return arr, tuple(int(v) for v in predictor.original_size), tuple(int(v) for v in predictor.input_size)


def compute_embeddings(model: Any, images: list[np.ndarray]) -> list[tuple[np.ndarray, tuple[int, int],
                                                                          tuple[int, int]]]:
    """Encode several ``H×W×3`` uint8 RGB images in one encoder call (a ``B×3×S×S`` batch).

    Same preprocessing as ``SamPredictor.set_image`` (resize longest side, normalise, pad); returns
    one ``(1×256×64×64 float32, orig_size, input_size)`` per image.
    """
    import torch

    from workers.sam.transforms import ResizeLongestSide

    if len(images) == 1:
        return [compute_embedding(model, images[0])]
    device = next(model.parameters()).device
    transform = ResizeLongestSide(model.image_encoder.img_size)
    batch, sizes = [], []
    for image in images:
        if getattr(model, "image_format", "RGB") != "RGB":
            image = image[..., ::-1]
        resized = transform.apply_image(np.ascontiguousarray(image))
        tensor = torch.as_tensor(resized, device=device).permute(2, 0, 1).contiguous().float()
        batch.append(model.preprocess(tensor))
        sizes.append((tuple(int(v) for v in image.shape[:2]), (int(resized.shape[0]), int(resized.shape[1]))))
    with torch.inference_mode(), autocast_for(model):
        features = model.image_encoder(torch.stack(batch)).float().cpu().numpy()
    return [(features[i:i + 1], orig, inp) for i, (orig, inp) in enumerate(sizes)]


def embedding_keys(sha256: str, model_version_id: int | str) -> dict[str, str]:
    return {dtype: keys.embedding_key(sha256, model_version_id, dtype) for dtype in STORED_DTYPES}


def all_stored(storage: Any, sha256: str, model_version_id: int | str) -> bool:
    """Whether every dtype of this (image, model version) is already in storage."""
    return all(storage.exists(k) for k in embedding_keys(sha256, model_version_id).values())


def store_embedding(storage: Any, embedding: np.ndarray, *, sha256: str, model_version_id: int | str,
                    orig_size: tuple[int, int], input_size: tuple[int, int]) -> EmbeddingResult:
    """Encode ``embedding`` (``1×256×64×64`` float) as float16 and int8 and write both atomically."""
    written: dict[str, str] = {}
    sizes: dict[str, int] = {}
    for dtype, key in embedding_keys(sha256, model_version_id).items():
        blob = encode_embedding(embedding, model_version=str(model_version_id), orig_size=orig_size,
                                input_size=input_size, dtype=dtype)
        storage.put_bytes(key, blob)
        written[dtype] = key
        sizes[dtype] = len(blob)
    return EmbeddingResult(written, orig_size, input_size, sizes)
