"""Decode stored image bytes into the RGB array the model expects, with clear errors."""
from __future__ import annotations

import io
import warnings

import numpy as np

from workers.engine.errors import BadInputError


def decode_image(data: bytes, *, max_pixels: int, name: str = "image") -> np.ndarray:
    """Decode ``data`` (PNG/JPEG/...) into an ``H×W×3`` uint8 RGB array, EXIF rotation applied.

    Raises ``BadInputError`` for empty or corrupt bytes and for images above ``max_pixels``.
    """
    from PIL import Image, ImageOps

    if not data:
        raise BadInputError(f"{name}: the image file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise BadInputError(
                        f"{name}: image is {width}x{height} = {width * height} pixels, "
                        f"more than the limit of {max_pixels}")
                img = ImageOps.exif_transpose(img)
                rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except BadInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadInputError(f"{name}: image is too large to decode ({exc})") from exc
    except Exception as exc:  # PIL raises many types for corrupt data
        raise BadInputError(f"{name}: cannot decode the image file ({type(exc).__name__}: {exc})") from exc
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise BadInputError(f"{name}: decoded image has unexpected shape {rgb.shape}")
    return rgb
