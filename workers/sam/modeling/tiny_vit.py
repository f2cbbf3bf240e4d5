"""MobileSAM's TinyViT image encoder (arch ``vit_t``), key-compatible with ``mobile_sam.pt``.

Conv stem and an MBConv stage at 256×256, then windowed-attention stages (128×128, 64×64, 64×64)
with a depthwise ``local_conv`` after each attention, patch merging between stages, and the SAM neck.
Pitfalls kept on purpose: the qkv rows are grouped **per head** ([q_h | k_h | v_h] for each head),
BatchNorm running statistics live in the checkpoint, and the unused ``norm_head``/``head`` classifier
exists so that strict loading of the official file works.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from workers.sam.modeling.common import LayerNorm2d


class Conv2d_BN(nn.Sequential):  # noqa: N801 - the name mirrors the checkpoint's module layout
    """Conv2d without bias (``c``) followed by BatchNorm2d (``bn``)."""

    def __init__(self, c_in: int, c_out: int, ks: int = 1, stride: int = 1, pad: int = 0, groups: int = 1,
                 bn_weight_init: float = 1.0) -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(c_in, c_out, ks, stride, pad, groups=groups, bias=False))
        bn = nn.BatchNorm2d(c_out)
        nn.init.constant_(bn.weight, bn_weight_init)
        nn.init.zeros_(bn.bias)
        self.add_module("bn", bn)


class PatchEmbed(nn.Module):
    """Two stride-2 3×3 convs: B×3×1024×1024 → B×64×256×256."""

    def __init__(self, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(Conv2d_BN(in_chans, embed_dim // 2, 3, 2, 1), nn.GELU(),
                                 Conv2d_BN(embed_dim // 2, embed_dim, 3, 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual: 1×1 expand, 3×3 depthwise, 1×1 project (BN zero-init), shortcut, GELU."""

    def __init__(self, c_in: int, c_out: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(c_in * expand_ratio)
        self.conv1 = Conv2d_BN(c_in, hidden, 1)
        self.act1 = nn.GELU()
        self.conv2 = Conv2d_BN(hidden, hidden, 3, 1, 1, groups=hidden)
        self.act2 = nn.GELU()
        self.conv3 = Conv2d_BN(hidden, c_out, 1, bn_weight_init=0.0)
        self.act3 = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B×C×H×W → B×C×H×W."""
        y = self.act2(self.conv2(self.act1(self.conv1(x))))
        return self.act3(self.conv3(y) + x)


class PatchMerging(nn.Module):
    """1×1 conv, depthwise 3×3 (stride 2, or 1 for the 320/448/576-wide last stage), 1×1 conv → tokens."""

    def __init__(self, input_resolution: tuple[int, int], dim: int, out_dim: int) -> None:
        super().__init__()
        self.input_resolution = input_resolution
        self.act = nn.GELU()
        self.conv1 = Conv2d_BN(dim, out_dim, 1)
        stride = 1 if out_dim in (320, 448, 576) else 2
        self.conv2 = Conv2d_BN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = Conv2d_BN(out_dim, out_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B×C×H×W or B×(H·W)×C → B×(H'·W')×C_out."""
        if x.ndim == 3:
            h, w = self.input_resolution
            x = x.transpose(1, 2).reshape(x.shape[0], -1, h, w)
        x = self.conv3(self.act(self.conv2(self.act(self.conv1(x)))))
        return x.flatten(2).transpose(1, 2)


class ConvLayer(nn.Module):
    """Stage 0: MBConv blocks on the 2-D map, then patch merging."""

    def __init__(self, dim: int, input_resolution: tuple[int, int], depth: int, out_dim: int,
                 conv_expand_ratio: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim, dim, conv_expand_ratio) for _ in range(depth))
        self.downsample = PatchMerging(input_resolution, dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x)


class Mlp(nn.Module):
    """LayerNorm → fc1 → GELU → fc2 (the norm sits inside, as in the checkpoint)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


def attention_bias_index(window_size: int) -> torch.Tensor:
    """N×N (N = ws²) index into the bias table: offset (|Δrow|, |Δcol|) ↦ |Δrow|·ws + |Δcol|.

    This equals numbering the distinct offsets in order of first appearance when both points run over
    the window in row-major order, which is how the official table is laid out.
    """
    rows = torch.arange(window_size).repeat_interleave(window_size)
    cols = torch.arange(window_size).repeat(window_size)
    dr = (rows[:, None] - rows[None, :]).abs()
    dc = (cols[:, None] - cols[None, :]).abs()
    return dr * window_size + dc


class Attention(nn.Module):
    """Window self-attention with a learned per-head bias per (|Δrow|, |Δcol|); qkv grouped per head."""

    def __init__(self, dim: int, key_dim: int, num_heads: int, window_size: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.scale = key_dim ** -0.5
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * key_dim * num_heads)
        self.proj = nn.Linear(key_dim * num_heads, dim)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, window_size * window_size))
        self.register_buffer("attention_bias_idxs", attention_bias_index(window_size), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: B×N×C (N = ws²) → B×N×C."""
        b, n, _ = x.shape
        qkv = self.qkv(self.norm(x)).view(b, n, self.num_heads, 3 * self.key_dim)
        q, k, v = qkv.split(self.key_dim, dim=3)
        q, k, v = (t.permute(0, 2, 1, 3) for t in (q, k, v))  # B×heads×N×d
        bias = self.attention_biases[:, self.attention_bias_idxs]  # heads×N×N
        attn = (q @ k.transpose(-2, -1)) * self.scale + bias
        out = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, -1)
        return self.proj(out)


class TinyViTBlock(nn.Module):
    """Windowed attention (residual), depthwise ``local_conv`` (no residual), MLP (residual); B×L×C."""

    def __init__(self, dim: int, input_resolution: tuple[int, int], num_heads: int, window_size: int,
                 mlp_ratio: float, local_conv_size: int) -> None:
        super().__init__()
        self.input_resolution = input_resolution
        self.window_size = window_size
        self.attn = Attention(dim, dim // num_heads, num_heads, window_size)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.local_conv = Conv2d_BN(dim, dim, local_conv_size, 1, local_conv_size // 2, groups=dim)

    def _windowed_attention(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.input_resolution
        b, _, c = x.shape
        ws = self.window_size
        if h == ws and w == ws:
            return self.attn(x)
        x = x.view(b, h, w, c)
        pad_b, pad_r = (ws - h % ws) % ws, (ws - w % ws) % ws
        if pad_b or pad_r:
            x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))  # zeros, not masked (as in the official model)
        hp, wp = h + pad_b, w + pad_r
        nh, nw = hp // ws, wp // ws
        x = x.view(b, nh, ws, nw, ws, c).transpose(2, 3).reshape(b * nh * nw, ws * ws, c)
        x = self.attn(x)
        x = x.view(b, nh, nw, ws, ws, c).transpose(2, 3).reshape(b, hp, wp, c)
        return x[:, :h, :w].reshape(b, h * w, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.input_resolution
        b, n, c = x.shape
        if n != h * w:
            raise ValueError(f"TinyViT block expects {h}×{w} tokens, got {n}")
        x = x + self._windowed_attention(x)
        x = self.local_conv(x.transpose(1, 2).reshape(b, c, h, w)).view(b, c, n).transpose(1, 2)
        return x + self.mlp(x)


class BasicLayer(nn.Module):
    """A stage of TinyViT blocks, optionally followed by patch merging."""

    def __init__(self, dim: int, input_resolution: tuple[int, int], depth: int, num_heads: int, window_size: int,
                 mlp_ratio: float, local_conv_size: int, out_dim: int | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TinyViTBlock(dim, input_resolution, num_heads, window_size, mlp_ratio, local_conv_size)
            for _ in range(depth))
        self.downsample = PatchMerging(input_resolution, dim, out_dim) if out_dim is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x


class TinyViT(nn.Module):
    """TinyViT-5M adapted to 1024 input as in MobileSAM: B×3×1024×1024 → B×256×64×64."""

    def __init__(self, img_size: int = 1024, in_chans: int = 3, num_classes: int = 1000,
                 embed_dims: tuple[int, ...] = (64, 128, 160, 320), depths: tuple[int, ...] = (2, 2, 6, 2),
                 num_heads: tuple[int, ...] = (2, 4, 5, 10), window_sizes: tuple[int, ...] = (7, 7, 14, 7),
                 mlp_ratio: float = 4.0, mbconv_expand_ratio: float = 4.0, local_conv_size: int = 3,
                 out_chans: int = 256) -> None:
        super().__init__()
        self.img_size = img_size
        self.patch_embed = PatchEmbed(in_chans, embed_dims[0])
        res = img_size // 4
        n = len(depths)
        layers: list[nn.Module] = [ConvLayer(embed_dims[0], (res, res), depths[0], embed_dims[1],
                                             mbconv_expand_ratio)]
        for i in range(1, n):
            r = res // (2 ** (i - 1 if i == n - 1 else i))
            layers.append(BasicLayer(embed_dims[i], (r, r), depths[i], num_heads[i], window_sizes[i], mlp_ratio,
                                     local_conv_size, embed_dims[i + 1] if i < n - 1 else None))
        self.layers = nn.ModuleList(layers)
        self.out_resolution = res // (2 ** (n - 2))
        self.norm_head = nn.LayerNorm(embed_dims[-1])  # unused classifier, kept for key compatibility
        self.head = nn.Linear(embed_dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: B×3×1024×1024 normalised → B×256×64×64."""
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        b, _, c = x.shape
        r = self.out_resolution
        return self.neck(x.view(b, r, r, c).permute(0, 3, 1, 2))
