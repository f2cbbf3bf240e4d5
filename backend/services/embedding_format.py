"""The binary wire format of image embeddings ("MLEM"), shared by workers, API and browser.

Layout (all integers little-endian):

    bytes 0..7    magic  b"MLEMBED1"
    bytes 8..11   uint32 header length L
    bytes 12..    UTF-8 JSON header of L bytes, padded with spaces so that the data starts
                  at a multiple of 16 bytes
    then          the tensor data, C-order, ``prod(shape)`` elements of ``dtype``

Header fields:
    dtype          "float32" | "float16" | "int8"
    shape          [1, 256, 64, 64]
    model_version  the model version id (string) that produced it: an embedding only fits the
                   decoder of the same checkpoint
    orig_size      [H, W] of the original image
    input_size     [h, w] after resizing the longest side to 1024 (before padding)
    scales         int8 only: one float per channel; value = int8 * scales[c] (symmetric)

float16 halves the 4 MiB float32 embedding to 2 MiB, int8 quarters it (plus 1 KiB of scales).
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field

import numpy as np

MAGIC = b"MLEMBED1"
DTYPES = ("float32", "float16", "int8")


class EmbeddingFormatError(ValueError):
    """The bytes are not a valid Maskloop embedding."""


@dataclass
class EmbeddingHeader:
    dtype: str
    shape: list[int]
    model_version: str
    orig_size: list[int]
    input_size: list[int]
    scales: list[float] | None = field(default=None)

    def to_json(self) -> dict:
        out = {
            "dtype": self.dtype,
            "shape": list(self.shape),
            "model_version": self.model_version,
            "orig_size": list(self.orig_size),
            "input_size": list(self.input_size),
        }
        if self.scales is not None:
            out["scales"] = self.scales
        return out


def encode_embedding(
    embedding: np.ndarray,
    *,
    model_version: str,
    orig_size: tuple[int, int],
    input_size: tuple[int, int],
    dtype: str = "float16",
) -> bytes:
    """Serialise a 1×256×64×64 (or any C×H×W with a leading batch of 1) float embedding."""
    if dtype not in DTYPES:
        raise ValueError(f"unknown embedding dtype {dtype!r}; expected one of {DTYPES}")
    arr = np.asarray(embedding, dtype=np.float32)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[0] != 1:
        raise ValueError(f"embedding must have shape 1×C×H×W, got {tuple(arr.shape)}")
    if not np.isfinite(arr).all():
        raise ValueError("embedding contains NaN or infinite values")
    scales = None
    if dtype == "float32":
        data = arr.astype("<f4")
    elif dtype == "float16":
        data = arr.astype("<f2")
    else:
        absmax = np.abs(arr).max(axis=(0, 2, 3))
        sc = np.where(absmax > 0, absmax / 127.0, 1.0).astype(np.float32)
        q = np.clip(np.rint(arr / sc[None, :, None, None]), -127, 127).astype(np.int8)
        data = q
        scales = [float(s) for s in sc]
    header = EmbeddingHeader(
        dtype=dtype,
        shape=list(arr.shape),
        model_version=str(model_version),
        orig_size=[int(orig_size[0]), int(orig_size[1])],
        input_size=[int(input_size[0]), int(input_size[1])],
        scales=scales,
    )
    hjson = json.dumps(header.to_json(), separators=(",", ":")).encode("utf-8")
    pad = (-(len(MAGIC) + 4 + len(hjson))) % 16
    hjson += b" " * pad
    return MAGIC + struct.pack("<I", len(hjson)) + hjson + data.tobytes(order="C")


def decode_header(blob: bytes) -> tuple[EmbeddingHeader, int]:
    """Parse the header; returns it and the byte offset of the data."""
    if bytes(blob[:8]) != MAGIC[: len(blob[:8])]:
        raise EmbeddingFormatError("not a Maskloop embedding (bad magic)")
    if len(blob) < 12:
        raise EmbeddingFormatError(f"truncated embedding: {len(blob)} bytes, shorter than the 12-byte preamble")
    (hlen,) = struct.unpack("<I", blob[8:12])
    if 12 + hlen > len(blob):
        raise EmbeddingFormatError("truncated embedding header")
    try:
        h = json.loads(blob[12 : 12 + hlen].decode("utf-8"))
        header = EmbeddingHeader(
            dtype=h["dtype"],
            shape=[int(x) for x in h["shape"]],
            model_version=str(h["model_version"]),
            orig_size=[int(x) for x in h["orig_size"]],
            input_size=[int(x) for x in h["input_size"]],
            scales=h.get("scales"),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise EmbeddingFormatError(f"bad embedding header: {exc!r}") from exc
    if header.dtype not in DTYPES:
        raise EmbeddingFormatError(f"unknown embedding dtype {header.dtype!r}")
    if len(header.shape) != 4 or header.shape[0] != 1 or min(header.shape) <= 0:
        raise EmbeddingFormatError(f"embedding shape must be [1, C, H, W] with positive sizes, got {header.shape}")
    for name in ("orig_size", "input_size"):
        size = getattr(header, name)
        if len(size) != 2 or min(size) <= 0:
            raise EmbeddingFormatError(f"embedding {name} must be two positive integers, got {size}")
    if header.dtype == "int8":
        try:
            scales = np.asarray(header.scales, dtype=np.float32)
        except (ValueError, TypeError) as exc:
            raise EmbeddingFormatError(f"int8 embedding scales are not numbers: {exc}") from exc
        if scales.shape != (header.shape[1],):
            raise EmbeddingFormatError(
                f"int8 embedding needs one scale per channel ({header.shape[1]}), got shape {scales.shape}")
        if not np.isfinite(scales).all():
            raise EmbeddingFormatError("int8 embedding scales contain NaN or infinite values")
    return header, 12 + hlen


def decode_embedding(blob: bytes) -> tuple[np.ndarray, EmbeddingHeader]:
    """Return the float32 embedding (shape from the header) and its header."""
    header, offset = decode_header(blob)
    count = int(np.prod(header.shape))
    itemsize = {"float32": 4, "float16": 2, "int8": 1}[header.dtype]
    if len(blob) - offset != count * itemsize:
        raise EmbeddingFormatError(
            f"embedding data has {len(blob) - offset} bytes, expected {count * itemsize}"
        )
    np_dtype = {"float32": "<f4", "float16": "<f2", "int8": "i1"}[header.dtype]
    data = np.frombuffer(blob, dtype=np_dtype, count=count, offset=offset).reshape(header.shape)
    out = data.astype(np.float32)
    if header.dtype == "int8":
        out = out * np.asarray(header.scales, dtype=np.float32)[None, :, None, None]
    return out, header
