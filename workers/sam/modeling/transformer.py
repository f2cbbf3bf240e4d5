"""Two-way transformer of the SAM mask decoder: tokens and image features attend to each other.

Each layer: token self-attention, token→image cross-attention, token MLP, image→token cross-attention,
each followed by a LayerNorm; then a final token→image attention. Cross-attentions work in a reduced
internal dimension (``attention_downsample_rate``).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from workers.sam.modeling.common import MLPBlock


class Attention(nn.Module):
    """Multi-head attention with separate q/k/v/out projections and an optional smaller internal dim."""

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads != 0:
            raise ValueError(f"internal dim {self.internal_dim} is not divisible by {num_heads} heads")
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.v_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)  # B×heads×N×d

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q: B×Nq×C, k/v: B×Nk×C → B×Nq×C."""
        q = self._split(self.q_proj(q))
        k = self._split(self.k_proj(k))
        v = self._split(self.v_proj(v))
        attn = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
        out = torch.softmax(attn, dim=-1) @ v
        b, h, n, d = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * d))

    def _head_weights(self, proj: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
        """A projection's weight as heads×d×C and its bias as heads×d."""
        d = self.internal_dim // self.num_heads
        return proj.weight.reshape(self.num_heads, d, -1), proj.bias.reshape(self.num_heads, d)

    def few_queries(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``forward`` for a few queries over many keys, with the products taken in another order.

        Each head's key projection is moved onto the queries (q·(W x + b) = (Wᵀq)·x + q·b) and its value
        projection after the weighted sum (the softmax weights sum to 1, so the bias passes through), so
        the keys and values are never projected: the work on the long side is heads × queries wide
        instead of ``internal_dim``. The same result up to float rounding.
        """
        wk, bk = self._head_weights(self.k_proj)
        wv, bv = self._head_weights(self.v_proj)
        b, nq = q.shape[0], q.shape[1]
        qh = self._split(self.q_proj(q))  # B×heads×Nq×d
        q_in = (qh @ wk).reshape(b, -1, k.shape[-1])  # B×(heads·Nq)×C
        logits = q_in @ k.transpose(1, 2) + (qh * bk[:, None, :]).sum(-1).reshape(b, -1, 1)
        weights = torch.softmax(logits / math.sqrt(qh.shape[-1]), dim=-1)  # B×(heads·Nq)×Nk
        pooled = (weights @ v).reshape(b, self.num_heads, nq, -1)  # B×heads×Nq×C
        out = pooled @ wv.transpose(1, 2) + bv[:, None, :]  # B×heads×Nq×d
        return self.out_proj(out.transpose(1, 2).reshape(b, nq, self.internal_dim))

    def few_keys(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``forward`` for many queries over a few keys, with the products taken in another order.

        Each head's query projection is moved onto the keys and the output projection onto the
        values, so the many queries are never projected: the work on the long side is heads × keys
        wide instead of ``internal_dim``. The same result up to float rounding.
        """
        wq, bq = self._head_weights(self.q_proj)
        b, nq, nk = q.shape[0], q.shape[1], k.shape[1]
        d = self.internal_dim // self.num_heads
        kh = self._split(self.k_proj(k))  # B×heads×Nk×d
        vh = self._split(self.v_proj(v))
        k_in = (kh @ wq).reshape(b, -1, q.shape[-1])  # B×(heads·Nk)×C
        logits = q @ k_in.transpose(1, 2) + (kh * bq[:, None, :]).sum(-1).reshape(b, 1, -1)
        weights = torch.softmax((logits / math.sqrt(d)).reshape(b, nq, self.num_heads, nk), dim=-1)
        wo = self.out_proj.weight.reshape(-1, self.num_heads, d).permute(1, 2, 0)  # heads×d×C
        v_out = (vh @ wo).reshape(b, -1, wo.shape[-1])  # B×(heads·Nk)×C
        return weights.reshape(b, nq, -1) @ v_out + self.out_proj.bias


class TwoWayAttentionBlock(nn.Module):
    """One layer of the two-way transformer (see module docstring)."""

    def __init__(self, embedding_dim: int, num_heads: int, mlp_dim: int = 2048,
                 activation: type[nn.Module] = nn.ReLU, attention_downsample_rate: int = 2,
                 skip_first_layer_pe: bool = False) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLPBlock(embedding_dim, mlp_dim, activation)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, query_pe: torch.Tensor,
                key_pe: torch.Tensor, few_tokens: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """queries (tokens) B×T×C, keys (image) B×HW×C, with their positional terms → updated pair.

        ``few_tokens`` runs the cross-attentions as ``Attention.few_queries``/``few_keys``: the same
        result, cheaper while the heads × tokens are fewer than the attention's internal dimension.
        """
        to_image = self.cross_attn_token_to_image.few_queries if few_tokens else self.cross_attn_token_to_image
        to_token = self.cross_attn_image_to_token.few_keys if few_tokens else self.cross_attn_image_to_token
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)

        q = queries + query_pe
        k = keys + key_pe
        queries = self.norm2(queries + to_image(q, k, keys))

        queries = self.norm3(queries + self.mlp(queries))

        q = queries + query_pe
        k = keys + key_pe
        keys = self.norm4(keys + to_token(k, q, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    """Stack of ``TwoWayAttentionBlock`` plus a final token→image attention."""

    def __init__(self, depth: int = 2, embedding_dim: int = 256, num_heads: int = 8, mlp_dim: int = 2048,
                 activation: type[nn.Module] = nn.ReLU, attention_downsample_rate: int = 2) -> None:
        super().__init__()
        self.depth = depth
        self.embedding_dim = embedding_dim
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(embedding_dim, num_heads, mlp_dim, activation, attention_downsample_rate,
                                 skip_first_layer_pe=(i == 0))
            for i in range(depth))
        self.final_attn_token_to_image = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(self, image_embedding: torch.Tensor, image_pe: torch.Tensor, point_embedding: torch.Tensor,
                few_tokens: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """image_embedding / image_pe: B×C×h×w; point_embedding: B×T×C → (tokens B×T×C, image B×hw×C)."""
        return self.forward_tokens(image_embedding.flatten(2).permute(0, 2, 1), image_pe.flatten(2).permute(0, 2, 1),
                                   point_embedding, few_tokens)

    def few_tokens_pay(self, num_tokens: int) -> bool:
        """Whether the ``few_tokens`` order is the cheaper one for ``num_tokens`` tokens in eager torch.

        Its work on the image side grows with heads × tokens where the usual order's is the internal
        dimension; forward + backward on a 2-core CPU cost the same when heads × tokens is about 1.5 ×
        the internal dimension (24 tokens for the SAM decoder: 8 heads, internal dimension 128).
        """
        internal = self.layers[0].cross_attn_token_to_image.internal_dim if self.layers else self.embedding_dim
        return self.num_heads * num_tokens <= 1.5 * internal

    def forward_tokens(self, keys: torch.Tensor, key_pe: torch.Tensor, point_embedding: torch.Tensor,
                       few_tokens: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``forward`` with the image and its positional encoding already as tokens B×hw×C.

        ``few_tokens`` (see ``TwoWayAttentionBlock.forward``) changes the cost, not the result; None
        chooses by ``few_tokens_pay``.
        """
        if few_tokens is None:
            few_tokens = self.few_tokens_pay(point_embedding.shape[1])
        queries = point_embedding
        for layer in self.layers:
            queries, keys = layer(queries, keys, point_embedding, key_pe, few_tokens)
        q = queries + point_embedding
        k = keys + key_pe
        final = self.final_attn_token_to_image.few_queries if few_tokens else self.final_attn_token_to_image
        queries = self.norm_final_attn(queries + final(q, k, keys))
        return queries, keys
