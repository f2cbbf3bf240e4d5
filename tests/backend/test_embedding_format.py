"""The MLEM embedding wire format: round trips per dtype and clear errors for malformed blobs."""
from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from backend.services.embedding_format import (
    MAGIC,
    EmbeddingFormatError,
    decode_embedding,
    decode_header,
    encode_embedding,
)

SHAPE = (1, 256, 64, 64)


@pytest.fixture(scope="module")
def emb() -> np.ndarray:
    rng = np.random.default_rng(0)
    # Channels with very different magnitudes, like real SAM embeddings.
    return (rng.standard_normal(SHAPE) * rng.uniform(0.01, 3.0, (1, 256, 1, 1))).astype(np.float32)


def _blob(emb: np.ndarray, dtype: str) -> bytes:
    return encode_embedding(emb, model_version="v7", orig_size=(480, 640), input_size=(768, 1024), dtype=dtype)


def _with_header(header: dict, data: bytes) -> bytes:
    h = json.dumps(header).encode()
    h += b" " * ((-(12 + len(h))) % 16)
    return MAGIC + struct.pack("<I", len(h)) + h + data


@pytest.mark.parametrize("dtype,itemsize,tol", [("float32", 4, 0.0), ("float16", 2, 2e-3), ("int8", 1, 0.5 / 127)])
def test_round_trip(emb, dtype, itemsize, tol):
    blob = _blob(emb, dtype)
    header, offset = decode_header(blob)
    assert offset % 16 == 0 and blob[:8] == MAGIC
    assert len(blob) - offset == emb.size * itemsize
    assert header.dtype == dtype and header.shape == list(SHAPE) and header.model_version == "v7"
    assert header.orig_size == [480, 640] and header.input_size == [768, 1024]
    out, _ = decode_embedding(blob)
    assert out.dtype == np.float32 and out.shape == SHAPE
    if dtype == "float32":
        assert np.array_equal(out, emb)
    elif dtype == "float16":
        assert np.allclose(out, emb, rtol=tol, atol=1e-4)
    else:
        # Per-channel symmetric quantisation: error at most half a step of that channel's scale.
        step = np.abs(emb).max(axis=(0, 2, 3)) / 127
        assert (np.abs(out - emb) <= step[None, :, None, None] * 0.5 + 1e-6).all()
        assert len(header.scales) == 256


def test_three_dim_input_and_zero_channel(emb):
    e = emb[0].copy()
    e[5] = 0.0
    out, header = decode_embedding(encode_embedding(e, model_version=1, orig_size=(1, 1), input_size=(1, 1),
                                                    dtype="int8"))
    assert header.shape == list(SHAPE) and header.model_version == "1"
    assert (out[0, 5] == 0).all() and header.scales[5] == 1.0


@pytest.mark.parametrize("bad,match", [
    (np.zeros((2, 256, 4, 4)), "shape 1×C×H×W"),
    (np.zeros((4, 4)), "shape 1×C×H×W"),
    (np.full((1, 2, 2, 2), np.nan), "NaN"),
])
def test_encode_rejects_bad_arrays(bad, match):
    with pytest.raises(ValueError, match=match):
        encode_embedding(bad, model_version="v", orig_size=(1, 1), input_size=(1, 1))


def test_encode_rejects_unknown_dtype(emb):
    with pytest.raises(ValueError, match="unknown embedding dtype 'bf16'"):
        _blob(emb, "bf16")


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8"])
def test_truncated_and_padded_data(emb, dtype):
    blob = _blob(emb, dtype)
    _, offset = decode_header(blob)
    expected = emb.size * {"float32": 4, "float16": 2, "int8": 1}[dtype]
    with pytest.raises(EmbeddingFormatError, match=f"has {expected - 1} bytes, expected {expected}"):
        decode_embedding(blob[:-1])
    with pytest.raises(EmbeddingFormatError, match=f"has {expected + 3} bytes, expected {expected}"):
        decode_embedding(blob + b"abc")
    with pytest.raises(EmbeddingFormatError, match="truncated embedding header"):
        decode_embedding(blob[: offset - 1])


@pytest.mark.parametrize("blob,match", [
    (b"", "truncated embedding: 0 bytes"),
    (b"MLEM", "truncated embedding: 4 bytes"),
    (b"XLEMBED1" + b"\0" * 100, "bad magic"),
    (b"PK\x03\x04", "bad magic"),
    (MAGIC + b"\x01\x00", "truncated embedding: 10 bytes"),
    (MAGIC + struct.pack("<I", 10**6) + b"{}", "truncated embedding header"),
    (MAGIC + struct.pack("<I", 4) + b"{{{{", "bad embedding header"),
    (MAGIC + struct.pack("<I", 2) + b"\xff\xfe", "bad embedding header"),
    (MAGIC + struct.pack("<I", 2) + b"[]", "bad embedding header"),
])
def test_decode_rejects_malformed_preamble(blob, match):
    with pytest.raises(EmbeddingFormatError, match=match):
        decode_embedding(blob)


GOOD = {"dtype": "float16", "shape": [1, 2, 2, 2], "model_version": "m", "orig_size": [3, 4], "input_size": [6, 8]}


@pytest.mark.parametrize("change,match", [
    ({"dtype": "float64"}, "unknown embedding dtype 'float64'"),
    ({"shape": [1, 2, 2]}, r"shape must be \[1, C, H, W\]"),
    ({"shape": [2, 2, 2, 2]}, r"shape must be \[1, C, H, W\]"),
    ({"shape": [1, 2, 0, 2]}, "positive sizes"),
    ({"shape": "big"}, "bad embedding header"),
    ({"orig_size": [3]}, "orig_size must be two positive integers"),
    ({"input_size": [0, 8]}, "input_size must be two positive integers"),
    ({"model_version": None, "orig_size": None}, "bad embedding header"),
    ({"dtype": "int8"}, r"one scale per channel \(2\)"),
    ({"dtype": "int8", "scales": [1.0]}, r"one scale per channel \(2\)"),
    ({"dtype": "int8", "scales": ["a", "b"]}, "scales are not numbers"),
    ({"dtype": "int8", "scales": [1.0, float("nan")]}, "NaN or infinite"),
])
def test_decode_rejects_bad_header_fields(change, match):
    header = {**GOOD, **change}
    header = {k: v for k, v in header.items() if v is not None}
    with pytest.raises(EmbeddingFormatError, match=match):
        decode_embedding(_with_header(header, b"\0" * 16))


def test_missing_field_is_named():
    header = {k: v for k, v in GOOD.items() if k != "input_size"}
    with pytest.raises(EmbeddingFormatError, match="input_size"):
        decode_embedding(_with_header(header, b"\0" * 16))


def test_hand_built_blob_decodes():
    """A blob built from the documented layout alone (as the browser reads it) decodes."""
    values = np.arange(8, dtype="<f2").reshape(1, 2, 2, 2)
    out, header = decode_embedding(_with_header(GOOD, values.tobytes()))
    assert np.array_equal(out, values.astype(np.float32)) and header.orig_size == [3, 4]
    q = np.array([[-127, 0], [1, 127], [5, 6], [7, 8]], dtype=np.int8).reshape(1, 2, 2, 2)
    out, _ = decode_embedding(_with_header({**GOOD, "dtype": "int8", "scales": [0.5, 2.0]}, q.tobytes()))
    assert np.allclose(out, q.astype(np.float32) * np.array([0.5, 2.0])[None, :, None, None])
