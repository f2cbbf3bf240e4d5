"""A tiny dataset folder for the model commands' tests: one coloured rectangle per image, its 0/255 mask."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def tiny_dataset(root: Path, names: tuple[str, ...] = ("obj00_0", "obj01_1")) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i, name in enumerate(names):
        image = np.full((40, 56, 3), (30, 60, 200), np.uint8)
        mask = np.zeros((40, 56), np.uint8)
        mask[8 + i:30, 10:40 - i] = 255
        image[mask > 0] = (220, 40, 40)
        cv2.imwrite(str(root / "images" / f"{name}.png"), image)
        cv2.imwrite(str(root / "masks" / f"{name}.png"), mask)
    return root
