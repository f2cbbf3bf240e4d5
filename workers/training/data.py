"""Datasets of images with instance masks: validation, the coco-mval split, augmentation.

Layout of a dataset directory::

    DIR/images/NAME.jpg|png
    DIR/masks/NAME.png              one object (0 = background, 255 = object, 128 = ignore)
    DIR/masks/NAME/<instance>.png   or one file per instance

``scan_dataset`` checks every sample (missing mask, unreadable image or mask, size mismatch,
empty mask) and raises ``DatasetError`` naming the file, or skips it with a warning when
``skip_bad=True``. ``split_dataset`` splits by category without copying anything, and
``MaskDataset`` yields augmented training samples (scale jitter, crop, flip, colour jitter and
copy-paste of instances from other images) resized to the model's input frame.
"""
from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_NAME_RE = re.compile(r"^(?P<category>.*?)(?P<index>\d+)_(?P<image_id>\d+)$")


class DatasetError(ValueError):
    """A dataset directory or one of its files is unusable; the message names the file."""


@dataclass
class Sample:
    """One image and the paths of its instance masks."""

    name: str
    image_path: Path
    mask_paths: list[Path] = field(default_factory=list)


def read_image(path: Path) -> np.ndarray:
    """Read an RGB image as H×W×3 uint8; raise ``DatasetError`` if it cannot be decoded."""
    data = np.fromfile(str(path), dtype=np.uint8) if path.is_file() else None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data is not None and data.size else None
    if image is None:
        raise DatasetError(f"unreadable image: {path}" + ("" if path.is_file() else " (not a file)"))
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_mask(path: Path, flags: int = cv2.IMREAD_GRAYSCALE) -> np.ndarray:
    """Read a mask as H×W uint8 (0 background, 128 ignore, 255 object); raise if unreadable.
    ``cv2.IMREAD_UNCHANGED`` reads the file as it is stored (channels, bit depth), to check its format."""
    data = np.fromfile(str(path), dtype=np.uint8) if path.is_file() else None
    mask = cv2.imdecode(data, flags) if data is not None and data.size else None
    if mask is None:
        raise DatasetError(f"unreadable mask: {path}")
    return mask


def _find_masks(masks_dir: Path, name: str) -> list[Path]:
    single = masks_dir / f"{name}.png"
    if single.is_file():
        return [single]
    folder = masks_dir / name
    if folder.is_dir():
        return sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png")
    return []


def _mask_format_problem(raw: np.ndarray) -> str | None:
    """What makes a mask file, decoded as stored, other than 8-bit single-channel 0/255 (128 ignore), or None."""
    if raw.ndim != 2:
        return f"has {raw.shape[2]} channels"
    if raw.dtype != np.uint8:
        return f"is {raw.dtype.itemsize * 8}-bit"
    odd = np.setdiff1d(np.unique(raw), (0, 128, 255))
    return f"has values other than 0, 128 and 255 (e.g. {', '.join(map(str, odd[:5]))})" if odd.size else None


def _check_sample(sample: Sample) -> None:
    image = read_image(sample.image_path)  # first: a folder or broken link named like an image has no mask either
    if not sample.mask_paths:
        raise DatasetError(f"missing mask for image {sample.image_path}: expected masks/{sample.name}.png "
                           f"or masks/{sample.name}/<instance>.png")
    for mask_path in sample.mask_paths:
        mask = read_mask(mask_path, cv2.IMREAD_UNCHANGED)  # once: checked as stored, then used as it is
        problem = _mask_format_problem(mask)
        if problem:
            raise DatasetError(f"bad mask {mask_path}: it {problem}; expected an 8-bit single-channel PNG "
                               "with 0 = background, 255 = object, 128 = ignore")
        if mask.shape != image.shape[:2]:
            raise DatasetError(f"size mismatch: mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} but image "
                               f"{sample.image_path} is {image.shape[1]}x{image.shape[0]} (width x height)")
        if not (mask > 128).any():
            raise DatasetError(f"empty mask (no pixel above 128): {mask_path}")


def list_image_names(dataset_dir: str | Path) -> list[str]:
    """Sorted names (file stems) of the images in ``DIR/images``."""
    images_dir = Path(dataset_dir) / "images"
    if not images_dir.is_dir():
        raise DatasetError(f"dataset directory {dataset_dir} has no images/ folder")
    return sorted(p.stem for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def scan_dataset(dataset_dir: str | Path, names: list[str] | None = None, *, skip_bad: bool = False,
                 check: bool = True) -> list[Sample]:
    """List (and by default validate) the samples of a dataset directory.

    ``names`` restricts the scan to those image names (a split), without copying data. Bad samples
    raise ``DatasetError`` naming the file, or are skipped with a warning when ``skip_bad``.
    """
    root = Path(dataset_dir)
    if not root.is_dir():
        raise DatasetError(f"dataset directory not found: {root}")
    masks_dir = root / "masks"
    if not masks_dir.is_dir():
        raise DatasetError(f"dataset directory {root} has no masks/ folder")
    if not (root / "images").is_dir():
        raise DatasetError(f"dataset directory {root} has no images/ folder")
    by_stem: dict[str, Path] = {}
    for p in sorted((root / "images").iterdir()):
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if p.stem in by_stem:  # both would take masks/<stem>: which image they outline cannot be told
            raise DatasetError(f"two images named {p.stem!r}: {by_stem[p.stem].name} and {p.name} in "
                               f"{root / 'images'}; masks are matched by name, so rename or remove one")
        by_stem[p.stem] = p
    if not by_stem:
        raise DatasetError(f"no images (.jpg, .jpeg, .png) in {root / 'images'}")
    wanted = sorted(by_stem) if names is None else list(names)
    samples: list[Sample] = []
    for name in wanted:
        if name not in by_stem:
            raise DatasetError(f"image {name!r} not found in {root / 'images'}")
        sample = Sample(name, by_stem[name], _find_masks(masks_dir, name))
        if check:
            try:
                _check_sample(sample)
            except DatasetError as exc:
                if not skip_bad:
                    raise
                logger.warning("skipping %s: %s", name, exc)
                continue
        samples.append(sample)
    if not samples:
        raise DatasetError(f"no usable samples in {root}")
    return samples


def split_dataset(dataset_dir: str | Path, val_per_category: int = 2) -> tuple[list[str], list[str]]:
    """Deterministic train/val split by category for names ``<category><index>_<imageid>``.

    Within each category the names are ordered by index; the last ``val_per_category`` go to
    validation (indices 8-9 of coco-mval), the rest to training, so both splits hold every category.
    Names that do not follow the pattern go to training.
    """
    groups: dict[str, list[tuple[int, str]]] = defaultdict(list)
    train: list[str] = []
    for name in list_image_names(dataset_dir):
        match = _NAME_RE.match(name)
        if match is None:
            train.append(name)
            continue
        groups[match["category"]].append((int(match["index"]), name))
    val: list[str] = []
    for members in groups.values():
        members.sort()
        cut = max(len(members) - val_per_category, 1) if len(members) > 1 else len(members)
        train.extend(n for _, n in members[:cut])
        val.extend(n for _, n in members[cut:])
    return sorted(train), sorted(val)


def names_for_split(dataset_dir: str | Path, split: str | None) -> list[str] | None:
    """Names of ``split`` ('train', 'val'), or None for the whole directory ('all' or None)."""
    if split in (None, "all"):
        return None
    if split not in ("train", "val"):
        raise DatasetError(f"unknown split {split!r}: expected 'train', 'val' or 'all'")
    train, val = split_dataset(dataset_dir)
    chosen = train if split == "train" else val
    if not chosen and (train or val):
        raise DatasetError(f"the {split} split of {dataset_dir} is empty: it is made by category from names "
                           "<category><index>_<imageid> (e.g. cat08_123), each category with at least two "
                           "images; use --split all for other names")
    return chosen


@dataclass
class AugmentConfig:
    """Random augmentation applied to training samples."""

    scale_range: tuple[float, float] = (0.6, 1.4)
    flip_prob: float = 0.5
    color_jitter: float = 0.3
    copy_paste_prob: float = 0.5
    max_pastes: int = 2
    min_visible_fraction: float = 0.3


def _color_jitter(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    if strength <= 0:
        return image
    out = image.astype(np.float32)
    brightness = 1.0 + rng.uniform(-strength, strength)
    contrast = 1.0 + rng.uniform(-strength, strength)
    saturation = 1.0 + rng.uniform(-strength, strength)
    mean = out.mean()
    out = (out - mean) * contrast + mean
    gray = out.mean(axis=2, keepdims=True)
    out = (out - gray) * saturation + gray
    out = out * brightness
    return np.clip(out, 0, 255).astype(np.uint8)


def _scale_and_crop(image: np.ndarray, masks: list[np.ndarray], scale: float, rng: np.random.Generator,
                    max_side: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Resize by ``scale`` and, if larger than the original, crop a random window keeping an object."""
    h, w = image.shape[:2]
    nh, nw = max(8, round(h * scale)), max(8, round(w * scale))
    image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    masks = [cv2.resize(m, (nw, nh), interpolation=cv2.INTER_NEAREST) for m in masks]
    ch, cw = min(nh, max(h, 8), max_side), min(nw, max(w, 8), max_side)
    if (ch, cw) == (nh, nw):
        return image, masks
    ys, xs = np.nonzero(masks[0] > 128)
    # Centre the crop near a random object pixel so the target usually stays in view.
    if len(ys):
        i = rng.integers(len(ys))
        y0 = int(np.clip(ys[i] - rng.integers(ch), 0, nh - ch))
        x0 = int(np.clip(xs[i] - rng.integers(cw), 0, nw - cw))
    else:
        y0, x0 = int(rng.integers(nh - ch + 1)), int(rng.integers(nw - cw + 1))
    return image[y0:y0 + ch, x0:x0 + cw], [m[y0:y0 + ch, x0:x0 + cw] for m in masks]


def _paste_instance(image: np.ndarray, masks: list[np.ndarray], src_image: np.ndarray, src_mask: np.ndarray,
                    rng: np.random.Generator, min_visible: float) -> tuple[np.ndarray, list[np.ndarray]]:
    """Copy the object of ``src_mask`` onto ``image`` at a random place and scale.

    Existing masks lose the pixels the pasted object covers; the pasted object becomes a new mask.
    The paste is skipped when it would hide too much of an existing object.
    """
    ys, xs = np.nonzero(src_mask > 128)
    if not len(ys):
        return image, masks
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    obj, obj_mask = src_image[y0:y1, x0:x1], src_mask[y0:y1, x0:x1] > 128
    h, w = image.shape[:2]
    scale = min(rng.uniform(0.3, 0.8) * min(h, w) / max(obj.shape[:2]), 2.0)
    oh, ow = max(4, round(obj.shape[0] * scale)), max(4, round(obj.shape[1] * scale))
    if oh >= h or ow >= w:
        return image, masks
    obj = cv2.resize(obj, (ow, oh), interpolation=cv2.INTER_LINEAR)
    obj_mask = cv2.resize(obj_mask.astype(np.uint8), (ow, oh), interpolation=cv2.INTER_NEAREST).astype(bool)
    top, left = int(rng.integers(h - oh + 1)), int(rng.integers(w - ow + 1))
    pasted = np.zeros((h, w), dtype=bool)
    pasted[top:top + oh, left:left + ow] = obj_mask
    new_masks = []
    for m in masks:
        before = (m > 128).sum()
        after = m.copy()
        after[pasted] = 0
        if before and (after > 128).sum() < min_visible * before:
            return image, masks
        new_masks.append(after)
    out = image.copy()
    region = out[top:top + oh, left:left + ow]
    region[obj_mask] = obj[obj_mask]
    return out, new_masks + [pasted.astype(np.uint8) * 255]


class MaskDataset(Dataset):
    """Training samples: an image resized to the model frame with its instance masks.

    Item: ``image`` uint8 3×H'×W' (longest side ``image_size``), ``masks`` float M×H'×W' in {0, 1}
    (ignore pixels count as background), ``size`` (H', W'), ``name``. ``dataset[i]`` is sample ``i`` as
    augmented in epoch 0; ``item(i, epoch)`` any epoch (the training stream: ``PositionDataset``).
    """

    def __init__(self, samples: list[Sample], *, image_size: int = 1024, augment: AugmentConfig | None = None,
                 max_masks: int = 4, seed: int = 0) -> None:
        if not samples:
            raise DatasetError("MaskDataset needs at least one sample")
        self.samples = samples
        self.image_size = image_size
        self.augment = augment
        self.max_masks = max_masks
        self.seed = seed

    def __len__(self) -> int:
        return len(self.samples)

    def _load(self, index: int) -> tuple[np.ndarray, list[np.ndarray]]:
        sample = self.samples[index]
        return read_image(sample.image_path), [read_mask(p) for p in sample.mask_paths]

    def __getitem__(self, index: int) -> dict:
        return self.item(index, 0)

    def item(self, index: int, epoch: int) -> dict:
        """Sample ``index`` as augmented in ``epoch`` (the augmentation is seeded by both)."""
        rng = np.random.default_rng((self.seed, epoch, index))
        image, masks = self._load(index)
        aug = self.augment
        if aug is not None:
            image, masks = _scale_and_crop(image, masks, rng.uniform(*aug.scale_range), rng, self.image_size)
            for _ in range(aug.max_pastes):  # each paste adds one more object to learn from per encoder pass
                if rng.random() >= aug.copy_paste_prob or len(self.samples) < 2:
                    break
                other = int(rng.integers(len(self.samples) - 1))
                other += other >= index
                src_image, src_masks = self._load(other)
                image, masks = _paste_instance(image, masks, src_image, src_masks[int(rng.integers(len(src_masks)))],
                                               rng, aug.min_visible_fraction)
            if rng.random() < aug.flip_prob:
                image, masks = image[:, ::-1], [m[:, ::-1] for m in masks]
            image = _color_jitter(image, aug.color_jitter, rng)
        masks = [m for m in masks if (m > 128).any()]
        if not masks:  # augmentation cropped every object away: fall back to the plain sample
            image, masks = self._load(index)
            masks = [m for m in masks if (m > 128).any()]
        if len(masks) > self.max_masks:
            masks = [masks[i] for i in sorted(rng.choice(len(masks), self.max_masks, replace=False))]
        h, w = image.shape[:2]
        scale = self.image_size / max(h, w)
        nh, nw = int(h * scale + 0.5), int(w * scale + 0.5)
        image = cv2.resize(np.ascontiguousarray(image), (nw, nh), interpolation=cv2.INTER_LINEAR)
        stacked = np.stack([cv2.resize(np.ascontiguousarray(m), (nw, nh), interpolation=cv2.INTER_NEAREST)
                            for m in masks]) > 128
        return {"image": torch.from_numpy(image).permute(2, 0, 1).contiguous(),
                "masks": torch.from_numpy(stacked.astype(np.float32)), "size": (nh, nw),
                "name": self.samples[index].name}


def collate_samples(batch: list[dict]) -> list[dict]:
    """Keep samples as a list: images differ in size and number of masks."""
    return batch


class PositionDataset(Dataset):
    """The training stream as a dataset: item ``pos`` is the sample at global position ``pos``.

    Position ``pos`` is sample ``order(epoch)[offset]`` of ``dataset`` with ``epoch, offset =
    divmod(pos, len(dataset))``, augmented as in that epoch; ``order(epoch)`` is a permutation seeded by
    ``(seed, epoch)``. So any set of positions can be loaded in any process, in any order, and a resumed
    or multi-process run sees exactly the samples of an uninterrupted single-process one.
    """

    def __init__(self, dataset: MaskDataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self._orders: dict[int, np.ndarray] = {}

    def order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            self._orders = {epoch: np.random.default_rng((self.seed, epoch)).permutation(len(self.dataset))}
        return self._orders[epoch]

    def __len__(self) -> int:  # positions are unbounded; the sampler says which ones are read
        return 2 ** 62

    def __getitem__(self, pos: int) -> dict:
        epoch, offset = divmod(int(pos), len(self.dataset))
        return self.dataset.item(int(self.order(epoch)[offset]), epoch)
