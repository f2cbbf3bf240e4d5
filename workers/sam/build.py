"""Builders for every supported architecture and strict checkpoint loading.

``build_sam(arch, checkpoint)`` accepts official raw state_dicts (``sam_vit_h_4b8939.pth``,
``mobile_sam.pt``) and Maskloop checkpoints ``{"arch": str, "model": state_dict, "meta": dict}``.
Loading is strict; a checkpoint of the wrong architecture fails with a message naming missing,
unexpected and mis-shaped keys and a guess of the architecture it probably belongs to.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from backend.core.files import atomic_write
from workers.sam.modeling.mask_decoder import MaskDecoder
from workers.sam.modeling.prompt_encoder import PromptEncoder
from workers.sam.modeling.sam import Sam
from workers.sam.modeling.transformer import TwoWayTransformer

logger = logging.getLogger(__name__)

PROMPT_EMBED_DIM = 256
IMAGE_SIZE = 1024
EMBED_GRID = 64
DEFAULT_MODEL_PATH = Path(__file__).resolve().parents[2] / "models" / "default" / "model.pt"
DEFAULT_ARCH = "lite_clicks"  # the arch of models/default (build_sam("default"))


def _assemble(image_encoder: nn.Module, prompt_maps: bool = False) -> Sam:
    prompt_encoder = PromptEncoder(embed_dim=PROMPT_EMBED_DIM, image_embedding_size=(EMBED_GRID, EMBED_GRID),
                                   input_image_size=(IMAGE_SIZE, IMAGE_SIZE), mask_in_chans=16,
                                   prompt_maps=prompt_maps)
    mask_decoder = MaskDecoder(
        num_multimask_outputs=3, transformer_dim=PROMPT_EMBED_DIM, iou_head_depth=3, iou_head_hidden_dim=256,
        transformer=TwoWayTransformer(depth=2, embedding_dim=PROMPT_EMBED_DIM, mlp_dim=2048, num_heads=8))
    return Sam(image_encoder, prompt_encoder, mask_decoder)


def _vit_encoder(embed_dim: int, depth: int, num_heads: int, global_attn_indexes: tuple[int, ...]) -> nn.Module:
    from workers.sam.modeling.image_encoder import ImageEncoderViT

    return ImageEncoderViT(img_size=IMAGE_SIZE, patch_size=16, embed_dim=embed_dim, depth=depth,
                           num_heads=num_heads, mlp_ratio=4.0, out_chans=PROMPT_EMBED_DIM, qkv_bias=True,
                           use_rel_pos=True, window_size=14, global_attn_indexes=global_attn_indexes)


def _tiny_vit_encoder() -> nn.Module:
    from workers.sam.modeling.tiny_vit import TinyViT

    return TinyViT(img_size=IMAGE_SIZE, in_chans=3, num_classes=1000, embed_dims=(64, 128, 160, 320),
                   depths=(2, 2, 6, 2), num_heads=(2, 4, 5, 10), window_sizes=(7, 7, 14, 7), mlp_ratio=4.0,
                   mbconv_expand_ratio=4.0, local_conv_size=3)


def _lite_encoder() -> nn.Module:
    from workers.sam.modeling.lite_encoder import LiteImageEncoder

    return LiteImageEncoder(out_chans=PROMPT_EMBED_DIM, img_size=IMAGE_SIZE)


#: arch name → zero-argument factory of the image encoder
ENCODER_FACTORIES: dict[str, Callable[[], nn.Module]] = {
    "vit_h": partial(_vit_encoder, 1280, 32, 16, (7, 15, 23, 31)),
    "vit_l": partial(_vit_encoder, 1024, 24, 16, (5, 11, 17, 23)),
    "vit_b": partial(_vit_encoder, 768, 12, 12, (2, 5, 8, 11)),
    "vit_t": _tiny_vit_encoder,
    "lite": _lite_encoder,
    "lite_clicks": _lite_encoder,
}
#: Maskloop archs whose prompt encoder also draws the clicks and box as maps (``PromptMaps``)
PROMPT_MAP_ARCHES = frozenset({"lite_clicks"})
ARCHES: tuple[str, ...] = tuple(ENCODER_FACTORIES) + ("default",)


def build_model(arch: str) -> Sam:
    """A randomly initialised model of ``arch`` (no checkpoint), in train mode on the CPU."""
    if arch == "default":
        arch = DEFAULT_ARCH
    if arch not in ENCODER_FACTORIES:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHES)}")
    return _assemble(ENCODER_FACTORIES[arch](), prompt_maps=arch in PROMPT_MAP_ARCHES)


def _pick_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def read_checkpoint(path: str | Path) -> tuple[str | None, dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint file → (arch or None for raw state_dicts, state_dict, meta).

    Raises FileNotFoundError for a missing file and ValueError for an unreadable or non-dict file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated/corrupt/pickled-code files
        raise ValueError(f"cannot read checkpoint {path}: corrupt or not a PyTorch file ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from exc
    if not isinstance(obj, Mapping):
        raise ValueError(f"checkpoint {path} holds a {type(obj).__name__}, expected a dict (a state_dict or "
                         "a Maskloop checkpoint {'arch', 'model', 'meta'})")
    if "model" in obj and "arch" in obj:
        state, arch, meta = obj["model"], obj["arch"], obj.get("meta") or {}
        if not isinstance(arch, str):
            raise ValueError(f"checkpoint {path}: 'arch' is a {type(arch).__name__}, expected a string")
        if not isinstance(state, Mapping):
            raise ValueError(f"checkpoint {path}: 'model' is a {type(state).__name__}, expected a state_dict")
    else:
        state, arch, meta = obj, None, {}
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"checkpoint {path}: not a state_dict, non-tensor entries such as {bad[:3]}")
    return arch, dict(state), dict(meta)


def _expected_shapes(arch: str) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = build_model(arch)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def guess_arch(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """The registered arch whose state_dict keys and shapes best match ``state_dict`` (None if none is close)."""
    best, best_score = None, 0.0
    for arch in ENCODER_FACTORIES:
        try:
            expected = _expected_shapes(arch)
        except Exception:  # an encoder module that is not available cannot be guessed
            continue
        # the encoder tells most archs apart; the prompt maps tell lite from lite_clicks
        prefixes = ("image_encoder.", "prompt_encoder.prompt_maps.")
        enc = {k: s for k, s in expected.items() if k.startswith(prefixes)}
        if not enc:
            continue
        hits = sum(1 for k, s in enc.items() if k in state_dict and tuple(state_dict[k].shape) == s)
        extra = sum(1 for k in state_dict if k.startswith(prefixes) and k not in enc)
        score = hits / (len(enc) + extra)
        if score > best_score:
            best, best_score = arch, score
    return best if best_score > 0.5 else None


def _drop_absent_bn_counters(state: dict[str, torch.Tensor], expected: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Fill BatchNorm ``num_batches_tracked`` when a checkpoint omits them (some MobileSAM exports do)."""
    for key in expected:
        if key.endswith(".num_batches_tracked") and key not in state:
            state[key] = torch.tensor(0, dtype=torch.long)
    return state


def check_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], arch: str, source: str = "checkpoint") -> None:
    """Raise ValueError naming missing/unexpected/mis-shaped keys if ``state`` does not fit ``model`` exactly."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                  for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if not (missing or unexpected or mismatched):
        return
    parts = [f"{source} does not fit arch {arch!r}:"]
    if missing:
        parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
    if mismatched:
        parts.append(f"{len(mismatched)} shape mismatches (e.g. {'; '.join(mismatched[:3])})")
    guess = guess_arch(state)
    if guess and guess != arch:
        parts.append(f"it looks like a {guess!r} checkpoint: try build_sam({guess!r}, checkpoint=...)")
    raise ValueError(parts[0] + " " + "; ".join(parts[1:]))


def build_sam(arch: str | None = "default", checkpoint: str | Path | None = None,
              device: str | torch.device | None = None) -> Sam:
    """Build ``arch`` (``vit_h``, ``vit_l``, ``vit_b``, ``vit_t``, ``lite`` or ``default``), optionally loading
    ``checkpoint`` strictly; returns the model in eval mode on ``device`` (CUDA when available by default).

    ``default`` without a checkpoint loads the shipped ``models/default/model.pt``. With arch ``None`` or
    ``default`` and a checkpoint, the arch recorded in a Maskloop checkpoint (or guessed from a raw
    state_dict) is used.
    """
    if arch is not None and arch not in ARCHES:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHES)}")
    flexible = arch in (None, "default")
    if checkpoint is None and flexible:
        if not DEFAULT_MODEL_PATH.is_file():
            raise FileNotFoundError(f"the default model has not been trained/shipped yet: {DEFAULT_MODEL_PATH} "
                                    "does not exist (train it, or pass arch + checkpoint)")
        checkpoint = DEFAULT_MODEL_PATH
    if checkpoint is None:
        model = build_model(arch)  # type: ignore[arg-type]
    else:
        ck_arch, state, meta = read_checkpoint(checkpoint)
        if flexible:
            target = ck_arch or guess_arch(state)
            if target is None:
                raise ValueError(f"checkpoint {checkpoint} matches no known arch; pass arch explicitly")
        else:
            if ck_arch is not None and ck_arch != arch:
                raise ValueError(f"checkpoint {checkpoint} was saved for arch {ck_arch!r}, not {arch!r}")
            target = arch  # type: ignore[assignment]
        if target not in ENCODER_FACTORIES:
            raise ValueError(f"checkpoint {checkpoint} names unknown arch {target!r}")
        model = build_model(target)
        state = _drop_absent_bn_counters(state, model.state_dict())
        check_state_dict(model, state, target, source=f"checkpoint {checkpoint}")
        model.load_state_dict(state, strict=True)
        model.arch = target  # type: ignore[assignment]
        model.meta = meta  # type: ignore[assignment]
        logger.info("loaded %s checkpoint %s", target, checkpoint)
    if not hasattr(model, "arch"):
        model.arch = arch if arch != "default" else DEFAULT_ARCH  # type: ignore[assignment]
    return model.to(_pick_device(device)).eval()


def build_for_finetuning(arch: str, checkpoint: str | Path, device: str | torch.device | None = None) -> Sam:
    """``arch`` initialised from ``checkpoint`` for training (``maskloop train --init``).

    Like ``build_sam``, except that a checkpoint of the same image encoder without prompt maps (``lite``)
    may start a prompt-map arch (``lite_clicks``): every weight it has is loaded and the new
    ``PromptMaps`` start at zero, so the model first decodes exactly as the checkpoint did.
    """
    ck_arch, state, meta = read_checkpoint(checkpoint)
    source = ck_arch or guess_arch(state)
    upgrade = (arch in PROMPT_MAP_ARCHES and source is not None and source not in PROMPT_MAP_ARCHES
               and ENCODER_FACTORIES.get(source) is ENCODER_FACTORIES[arch])
    if not upgrade:
        return build_sam(arch, checkpoint=checkpoint, device=device)
    model = build_model(arch)
    fresh = {k: v for k, v in model.state_dict().items() if k.startswith("prompt_encoder.prompt_maps.")}
    check_state_dict(model, {**state, **fresh}, arch, source=f"checkpoint {checkpoint}")
    model.load_state_dict({**state, **fresh}, strict=True)
    model.arch = arch  # type: ignore[assignment]
    model.meta = meta  # type: ignore[assignment]
    logger.info("initialised %s from %s checkpoint %s (prompt maps start at zero)", arch, source, checkpoint)
    return model.to(_pick_device(device)).eval()


def save_checkpoint(model: nn.Module, path: str | Path, arch: str, meta: Mapping[str, Any] | None = None) -> Path:
    """Write a Maskloop checkpoint ``{"arch", "model", "meta"}`` atomically (temp file + fsync + os.replace)."""
    if arch == "default":
        arch = DEFAULT_ARCH
    if arch not in ENCODER_FACTORIES:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ENCODER_FACTORIES)}")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return atomic_write(path, lambda tmp: torch.save({"arch": arch, "model": state, "meta": dict(meta or {})}, tmp))


def _registry_builder(arch: str) -> Callable[..., Sam]:
    def build(checkpoint: str | Path | None = None, device: str | torch.device | None = None) -> Sam:
        return build_sam(arch, checkpoint=checkpoint, device=device)

    build.__name__ = f"build_sam_{arch}"
    return build


#: like the official ``sam_model_registry``: arch → builder(checkpoint=None, device=None)
sam_model_registry: dict[str, Callable[..., Sam]] = {arch: _registry_builder(arch) for arch in ARCHES}
