"""Maskloop's compact image encoder (arch ``lite``): a small CNN + two attention blocks, CPU-fast.

Design (trained from scratch on a few hundred images on a CPU):

* The normalised, padded 1×3×1024×1024 input is average-pooled to 512×512 (COCO photos are ≤ 640 px,
  so little detail is lost) — this alone makes the encoder ~4× cheaper.
* Stem (two stride-2 3×3 convs) → 128×128 (stride 4 of the 512 frame), one inverted-residual block.
* Stride-2 conv → 64×64, two inverted-residual blocks (dilation 1, 2).
* Stride-2 conv → 32×32, three dilated inverted-residual blocks (dilation 1, 2, 4) and two global
  self-attention blocks (1024 tokens) with a depthwise-conv positional term, for image-wide context.
* Fusion at 64×64: the 64×64 features, the upsampled 32×32 context and the 128×128 detail folded by
  space-to-depth are concatenated, then the standard SAM neck (1×1 conv → LN2d → 3×3 conv → LN2d)
  produces the 1×256×64×64 embedding.

GroupNorm (fused, batch-size independent) is used inside the blocks; residual branches end in a
zero-initialised norm so every block starts as the identity, which helps training from scratch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from workers.sam.modeling.common import LayerNorm2d


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(8 if channels % 8 == 0 else 1, channels)


class ConvNormAct(nn.Sequential):
    """Conv2d (no bias) → GroupNorm → GELU."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> None:
        super().__init__(nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False), _norm(c_out), nn.GELU())


class InvertedResidual(nn.Module):
    """1×1 expand → dilated 3×3 depthwise → 1×1 project, with a residual; B×C×H×W → B×C×H×W."""

    def __init__(self, channels: int, expand: int = 3, dilation: int = 1) -> None:
        super().__init__()
        hidden = channels * expand
        self.expand = ConvNormAct(channels, hidden, kernel=1)
        self.depthwise = nn.Sequential(
            nn.Conv2d(hidden, hidden, 3, 1, dilation, dilation=dilation, groups=hidden, bias=False),
            _norm(hidden), nn.GELU())
        self.project = nn.Conv2d(hidden, channels, 1, bias=False)
        self.project_norm = _norm(channels)
        nn.init.zeros_(self.project_norm.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.project_norm(self.project(self.depthwise(self.expand(x))))


class GlobalAttentionBlock(nn.Module):
    """Depthwise-conv positional term, then pre-norm multi-head self-attention and MLP over all pixels.

    B×C×H×W → B×C×H×W.
    """

    def __init__(self, dim: int, num_heads: int = 4, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.pos = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos(x)
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # B×HW×C
        qkv = self.qkv(self.norm1(tokens)).reshape(b, h * w, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each B×heads×HW×d
        attn = F.scaled_dot_product_attention(q, k, v)
        tokens = tokens + self.proj(attn.transpose(1, 2).reshape(b, h * w, c))
        tokens = tokens + self.mlp(self.norm2(tokens))
        return tokens.transpose(1, 2).reshape(b, c, h, w)


class LiteImageEncoder(nn.Module):
    """Compact encoder: normalised B×3×1024×1024 → B×256×64×64 (see the module docstring)."""

    def __init__(self, widths: tuple[int, int, int] = (48, 96, 192), out_chans: int = 256,
                 img_size: int = 1024, num_heads: int = 4) -> None:
        super().__init__()
        c1, c2, c3 = widths
        self.img_size = img_size
        self.stem = nn.Sequential(ConvNormAct(3, 24, stride=2), ConvNormAct(24, c1, stride=2))
        self.stage1 = nn.Sequential(InvertedResidual(c1, expand=2))
        self.down2 = ConvNormAct(c1, c2, stride=2)
        self.stage2 = nn.Sequential(InvertedResidual(c2, dilation=1), InvertedResidual(c2, dilation=2))
        self.down3 = ConvNormAct(c2, c3, stride=2)
        self.stage3 = nn.Sequential(
            InvertedResidual(c3, dilation=1), InvertedResidual(c3, dilation=2),
            GlobalAttentionBlock(c3, num_heads), InvertedResidual(c3, dilation=4),
            GlobalAttentionBlock(c3, num_heads))
        self.context_proj = ConvNormAct(c3, 128, kernel=1)
        fused = c2 + 128 + 4 * c1
        self.neck = nn.Sequential(
            nn.Conv2d(fused, out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: B×3×1024×1024 normalised → B×256×64×64."""
        if x.shape[-2:] != (self.img_size, self.img_size):
            raise ValueError(f"LiteImageEncoder expects B×3×{self.img_size}×{self.img_size}, got {tuple(x.shape)}")
        x = F.avg_pool2d(x, 2)                   # 512×512
        detail = self.stage1(self.stem(x))       # c1×128×128
        mid = self.stage2(self.down2(detail))    # c2×64×64
        context = self.context_proj(self.stage3(self.down3(mid)))  # 128×32×32
        context = F.interpolate(context, size=mid.shape[-2:], mode="bilinear", align_corners=False)
        fused = torch.cat([mid, context, F.pixel_unshuffle(detail, 2)], dim=1)
        return self.neck(fused)
