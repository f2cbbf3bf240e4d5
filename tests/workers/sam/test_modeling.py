"""Numerics of the SAM modules against independent, straightforward re-computations."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from workers.sam.build import build_model
from workers.sam.modeling.common import LayerNorm2d
from workers.sam.modeling.image_encoder import (Attention, Block, add_decomposed_rel_pos, window_partition,
                                                 window_unpartition)
from workers.sam.modeling.lite_encoder import LiteImageEncoder
from workers.sam.modeling.prompt_encoder import PromptEncoder, render_prompt_maps
from workers.sam.modeling.tiny_vit import Attention as TinyAttention
from workers.sam.modeling.tiny_vit import TinyViT
from workers.sam.modeling.transformer import Attention as TokenAttention


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _randomise(module: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return module


def test_layernorm2d_matches_manual():
    ln = _randomise(LayerNorm2d(5))
    x = torch.randn(2, 5, 3, 4)
    mean = x.mean(1, keepdim=True)
    var = ((x - mean) ** 2).mean(1, keepdim=True)
    expected = (x - mean) / torch.sqrt(var + 1e-6) * ln.weight.view(1, 5, 1, 1) + ln.bias.view(1, 5, 1, 1)
    torch.testing.assert_close(ln(x), expected, rtol=1e-5, atol=1e-5)


def test_decomposed_rel_pos_matches_naive_loop():
    qh, qw, dim = 3, 4, 5  # non-square map: separate row (2·3−1) and column (2·4−1) tables
    rel_h, rel_w = torch.randn(2 * qh - 1, dim), torch.randn(2 * qw - 1, dim)
    q = torch.randn(2, qh * qw, dim)
    attn = torch.randn(2, qh * qw, qh * qw)
    got = add_decomposed_rel_pos(attn.clone(), q, rel_h, rel_w, (qh, qw), (qh, qw))
    expected = attn.clone()
    for b in range(2):
        for i in range(qh):
            for j in range(qw):
                for ki in range(qh):
                    for kj in range(qw):
                        qv = q[b, i * qw + j]
                        expected[b, i * qw + j, ki * qw + kj] += (qv @ rel_h[i - ki + qh - 1]
                                                                  + qv @ rel_w[j - kj + qw - 1])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def _naive_vit_attention(attn: Attention, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-head loop; qkv rows are [q all heads | k all heads | v all heads]; optional boolean key mask."""
    b, h, w, c = x.shape
    heads, d = attn.num_heads, c // attn.num_heads
    tokens = x.reshape(b, h * w, c)
    qkv = tokens @ attn.qkv.weight.t() + attn.qkv.bias
    outs = []
    for head in range(heads):
        q = qkv[..., head * d:(head + 1) * d]
        k = qkv[..., c + head * d:c + (head + 1) * d]
        v = qkv[..., 2 * c + head * d:2 * c + (head + 1) * d]
        logits = (q @ k.transpose(1, 2)) / math.sqrt(d)
        s_h, s_w = (attn.rel_pos_h.shape[0] + 1) // 2, (attn.rel_pos_w.shape[0] + 1) // 2
        rows = torch.arange(h * w) // w
        cols = torch.arange(h * w) % w
        rh = attn.rel_pos_h[rows[:, None] - rows[None, :] + s_h - 1]  # N×N×d
        rw = attn.rel_pos_w[cols[:, None] - cols[None, :] + s_w - 1]
        logits = logits + torch.einsum("bnd,nmd->bnm", q, rh) + torch.einsum("bnd,nmd->bnm", q, rw)
        if mask is not None:
            logits = logits.masked_fill(~mask, float("-inf"))
        outs.append(torch.softmax(logits, -1) @ v)
    out = torch.cat(outs, dim=-1) @ attn.proj.weight.t() + attn.proj.bias
    return out.reshape(b, h, w, c)


def test_vit_global_attention_matches_naive_per_head():
    attn = _randomise(Attention(dim=12, num_heads=3, use_rel_pos=True, input_size=(5, 6)))
    x = torch.randn(2, 5, 6, 12)
    torch.testing.assert_close(attn(x), _naive_vit_attention(attn, x), rtol=1e-4, atol=1e-5)


def test_windowed_block_equals_global_attention_masked_per_window():
    ws, side, dim = 4, 8, 8
    block = _randomise(Block(dim, num_heads=2, window_size=ws, use_rel_pos=True, input_size=(side, side)))
    # a global attention whose relative table agrees with the window table on offsets |d| < ws
    global_attn = Attention(dim, 2, use_rel_pos=True, input_size=(side, side))
    with torch.no_grad():
        global_attn.qkv.load_state_dict(block.attn.qkv.state_dict())
        global_attn.proj.load_state_dict(block.attn.proj.state_dict())
        for name in ("rel_pos_h", "rel_pos_w"):
            table = torch.randn(2 * side - 1, dim // 2)
            table[side - ws:side + ws - 1] = getattr(block.attn, name)
            getattr(global_attn, name).copy_(table)
    x = torch.randn(1, side, side, dim)
    win = torch.arange(side) // ws
    win_id = (win[:, None] * (side // ws) + win[None, :]).reshape(-1)
    mask = win_id[:, None] == win_id[None, :]
    normed = block.norm1(x)
    expected_attn = _naive_vit_attention(global_attn, normed, mask)
    expected = x + expected_attn
    expected = expected + block.mlp(block.norm2(expected))
    torch.testing.assert_close(block(x), expected, rtol=1e-4, atol=1e-5)


def test_window_partition_round_trip_with_padding():
    x = torch.randn(2, 9, 11, 3)
    windows, pad_hw = window_partition(x, 4)
    assert pad_hw == (12, 12) and windows.shape == (2 * 9, 4, 4, 3)
    torch.testing.assert_close(windows[1], x[0, 0:4, 4:8])  # second window of image 0 is row 0, column 1
    assert torch.all(windows[8][1:] == 0)  # bottom-right window: only the first row is real
    torch.testing.assert_close(window_unpartition(windows, 4, pad_hw, (9, 11)), x)


def test_tiny_vit_attention_per_head_qkv_and_bias():
    heads, key_dim, ws = 2, 3, 3
    attn = _randomise(TinyAttention(dim=heads * key_dim, key_dim=key_dim, num_heads=heads, window_size=ws))
    x = torch.randn(2, ws * ws, heads * key_dim)
    normed = F.layer_norm(x, (heads * key_dim,), attn.norm.weight, attn.norm.bias, eps=1e-5)
    qkv = normed @ attn.qkv.weight.t() + attn.qkv.bias
    outs = []
    for h in range(heads):
        base = h * 3 * key_dim  # rows grouped per head: [q_h | k_h | v_h]
        q, k, v = (qkv[..., base + i * key_dim: base + (i + 1) * key_dim] for i in range(3))
        logits = (q @ k.transpose(1, 2)) / math.sqrt(key_dim)
        for n in range(ws * ws):
            for m in range(ws * ws):
                dr, dc = abs(n // ws - m // ws), abs(n % ws - m % ws)
                logits[:, n, m] += attn.attention_biases[h, dr * ws + dc]
        outs.append(torch.softmax(logits, -1) @ v)
    expected = torch.cat(outs, -1) @ attn.proj.weight.t() + attn.proj.bias
    torch.testing.assert_close(attn(x), expected, rtol=1e-4, atol=1e-5)


def test_tiny_vit_small_input_runs_and_bn_stats_are_state():
    enc = TinyViT(img_size=256).eval()
    out = enc(torch.randn(1, 3, 256, 256))
    assert out.shape == (1, 256, 16, 16)
    keys = enc.state_dict()
    assert "layers.0.blocks.0.conv1.bn.running_mean" in keys and "neck.3.bias" in keys


def test_prompt_encoder_matches_manual_formula():
    pe = _randomise(PromptEncoder())
    gauss = pe.pe_layer.positional_encoding_gaussian_matrix

    def manual_pe(x: float, y: float) -> torch.Tensor:
        v = torch.tensor([2 * x - 1, 2 * y - 1]) @ gauss * 2 * math.pi
        return torch.cat([torch.sin(v), torch.cos(v)])

    coords = torch.tensor([[[100.0, 700.0], [5.0, 1000.0]]])
    labels = torch.tensor([[1, 0]])
    sparse, dense = pe(points=(coords, labels), boxes=None, masks=None)
    assert sparse.shape == (1, 3, 256) and dense.shape == (1, 256, 64, 64)
    exp0 = manual_pe(100.5 / 1024, 700.5 / 1024) + pe.point_embeddings[1].weight[0]
    exp1 = manual_pe(5.5 / 1024, 1000.5 / 1024) + pe.point_embeddings[0].weight[0]
    torch.testing.assert_close(sparse[0, 0], exp0, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(sparse[0, 1], exp1, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(sparse[0, 2], pe.not_a_point_embed.weight[0])  # padding point: PE zeroed
    torch.testing.assert_close(dense[0, :, 3, 4], pe.no_mask_embed.weight[0])

    box = torch.tensor([[10.0, 20.0, 300.0, 400.0]])
    sparse, _ = pe(points=(coords, labels), boxes=box, masks=None)
    assert sparse.shape == (1, 4, 256)  # no padding point when a box is given
    torch.testing.assert_close(sparse[0, 2], manual_pe(10.5 / 1024, 20.5 / 1024) + pe.point_embeddings[2].weight[0],
                               rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(sparse[0, 3], manual_pe(300.5 / 1024, 400.5 / 1024) + pe.point_embeddings[3].weight[0],
                               rtol=1e-4, atol=1e-4)

    grid = pe.get_dense_pe()
    assert grid.shape == (1, 256, 64, 64)
    torch.testing.assert_close(grid[0, :, 3, 10], manual_pe(10.5 / 64, 3.5 / 64), rtol=1e-4, atol=1e-4)

    mask = torch.randn(2, 1, 256, 256)
    _, dense = pe(points=None, boxes=None, masks=mask)
    torch.testing.assert_close(dense, pe.mask_downscaling(mask))


def test_prompt_maps_draw_clicks_and_box_where_they_are():
    # clicks at cell centres ((i + 0.5)·4 of the 1024 frame)
    coords = torch.tensor([[[102.0, 702.0], [902.0, 42.0], [0.0, 0.0]]])
    labels = torch.tensor([[1, 0, -1]])
    maps = render_prompt_maps(coords, labels, size=256, frame=1024, sigma=16.0)
    assert maps.shape == (1, 3, 256, 256)
    pos, neg, box = maps[0]
    assert divmod(int(pos.argmax()), 256) == (175, 25) and float(pos[175, 25]) == pytest.approx(1.0)
    assert divmod(int(neg.argmax()), 256) == (10, 225) and float(neg[10, 225]) == pytest.approx(1.0)
    assert float(pos[10, 225]) < 1e-6 and float(neg[175, 25]) < 1e-6
    assert float(pos[0, 0]) < 1e-6  # the padding point at (0, 0) draws nothing
    assert float(pos[179, 25]) == pytest.approx(math.exp(-0.5), abs=1e-5)  # one sigma (16 px) below
    assert float(box.abs().max()) == 0.0  # no box corners

    corners = torch.tensor([[[200.0, 300.0], [600.0, 500.0]]])
    box = render_prompt_maps(corners, torch.tensor([[2, 3]]), 256, 1024, 16.0)[0, 2]
    assert float(box[100, 100]) > 0.99 and float(box[10, 10]) < 0.01 and float(box[100, 160]) < 0.01
    assert float(box[74, 100]) < 0.5 < float(box[76, 100])  # the top edge lies at y = 300 (cell 75)
    lone = render_prompt_maps(corners, torch.tensor([[2, -1]]), 256, 1024, 16.0)[0, 2]
    assert float(lone.max()) == 0.0  # a top-left corner without its bottom-right is no box


def test_prompt_maps_start_silent_and_boxes_equal_labelled_corners():
    torch.manual_seed(1)
    plain = build_model("lite").prompt_encoder
    clicks = build_model("lite_clicks").prompt_encoder
    assert clicks.prompt_maps is not None and plain.prompt_maps is None
    clicks.load_state_dict({**plain.state_dict(), **{k: v for k, v in clicks.state_dict().items()
                                                      if k.startswith("prompt_maps.")}})
    coords, labels = torch.tensor([[[100.0, 700.0]]]), torch.tensor([[1]])
    box = torch.tensor([[10.0, 20.0, 300.0, 400.0]])
    # the last convolution starts at zero: a fresh lite_clicks decodes exactly as lite
    for a, b in zip(plain(points=(coords, labels), boxes=box, masks=None),
                    clicks(points=(coords, labels), boxes=box, masks=None)):
        torch.testing.assert_close(a, b)
    _randomise(clicks.prompt_maps)
    _, dense_box = clicks(points=None, boxes=box, masks=None)
    _, dense_plain = plain(points=None, boxes=box, masks=None)
    assert float((dense_box - dense_plain).abs().max().detach()) > 1e-3  # now the box reaches the dense embedding
    expected = dense_plain + clicks.prompt_maps(box.reshape(1, 2, 2), torch.tensor([[2, 3]]))
    torch.testing.assert_close(dense_box, expected)


def test_token_attention_matches_sdpa():
    attn = _randomise(TokenAttention(16, num_heads=4, downsample_rate=2))
    q, k, v = torch.randn(2, 5, 16), torch.randn(2, 7, 16), torch.randn(2, 7, 16)

    def heads(t, proj):
        return proj(t).reshape(2, t.shape[1], 4, 2).transpose(1, 2)

    out = F.scaled_dot_product_attention(heads(q, attn.q_proj), heads(k, attn.k_proj), heads(v, attn.v_proj))
    expected = attn.out_proj(out.transpose(1, 2).reshape(2, 5, 8))
    torch.testing.assert_close(attn(q, k, v), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("n_short", [1, 7, 30])
def test_token_attention_other_orders_equal_forward(n_short):
    """few_queries / few_keys reorder the products; the result is forward's, for any length and gradients too."""
    attn = _randomise(TokenAttention(32, num_heads=4, downsample_rate=2))
    short = torch.randn(2, n_short, 32, requires_grad=True)
    long_q, long_v = torch.randn(2, 50, 32), torch.randn(2, 50, 32)
    torch.testing.assert_close(attn.few_queries(short, long_q, long_v), attn(short, long_q, long_v),
                               rtol=1e-4, atol=1e-5)
    short_v = torch.randn(2, n_short, 32)
    torch.testing.assert_close(attn.few_keys(long_q, short, short_v), attn(long_q, short, short_v),
                               rtol=1e-4, atol=1e-5)
    grad_fast, = torch.autograd.grad(attn.few_keys(long_q, short, short_v).square().sum(), short)
    grad_ref, = torch.autograd.grad(attn(long_q, short, short_v).square().sum(), short)
    torch.testing.assert_close(grad_fast, grad_ref, rtol=1e-4, atol=1e-4)


def test_two_way_transformer_few_tokens_equals_forward():
    model = build_model("lite").eval()
    _randomise(model.mask_decoder)
    transformer = model.mask_decoder.transformer
    keys, pe, tokens = torch.randn(2, 64, 256), torch.randn(1, 64, 256), torch.randn(2, 9, 256)
    with torch.no_grad():
        ref = transformer.forward_tokens(keys, pe, tokens)
        fast = transformer.forward_tokens(keys, pe, tokens, few_tokens=True)
        nchw = transformer(keys.transpose(1, 2).reshape(2, 256, 8, 8), pe.transpose(1, 2).reshape(1, 256, 8, 8),
                           tokens)
    for a, b, c in zip(ref, fast, nchw):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(c, a)


def test_few_tokens_order_under_autocast_keeps_the_usual_dtypes():
    """Mixed precision (what training uses on a GPU; bfloat16 autocast here) runs the few-tokens order too."""
    transformer = build_model("lite").eval().mask_decoder.transformer
    keys, pe = torch.randn(1, 256, 256), torch.randn(1, 256, 256)
    tokens = torch.randn(1, 7, 256, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast = transformer.forward_tokens(keys, pe, tokens, few_tokens=True)
        ref = transformer.forward_tokens(keys, pe, tokens, few_tokens=False)
    assert [t.dtype for t in fast] == [t.dtype for t in ref]
    torch.testing.assert_close(fast[0].float(), ref[0].float(), rtol=0.05, atol=0.1)
    fast[1].float().sum().backward()
    assert tokens.grad is not None and torch.isfinite(tokens.grad).all()


def test_mask_decoder_multimask_selection_and_batch_consistency():
    model = build_model("lite").eval()
    _randomise(model.mask_decoder)
    emb = torch.randn(1, 256, 64, 64)
    coords = torch.rand(2, 2, 2) * 1024
    labels = torch.tensor([[1, 0], [1, 1]])
    with torch.no_grad():
        sparse, dense = model.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        pe = model.prompt_encoder.get_dense_pe()
        all_masks, all_iou = model.mask_decoder.predict_masks(emb, pe, sparse, dense)
        multi, iou = model.mask_decoder(emb, pe, sparse, dense, multimask_output=True)
        single, iou1 = model.mask_decoder(emb, pe, sparse, dense, multimask_output=False)
        one, _ = model.mask_decoder(emb, pe, sparse[1:], dense[1:], multimask_output=True)
    assert all_masks.shape == (2, 4, 256, 256) and all_iou.shape == (2, 4)
    torch.testing.assert_close(multi, all_masks[:, 1:])
    torch.testing.assert_close(single, all_masks[:, :1])
    torch.testing.assert_close(iou1, all_iou[:, :1])
    # logits of this randomised decoder reach ~100-260, where float32 rounding of a batch of 2 against a
    # batch of 1 differs by up to ~3e-4: so the tolerance is relative to their size
    torch.testing.assert_close(one[0], multi[1], rtol=1e-4, atol=1e-5 * float(multi.abs().max()))


def test_lite_encoder_shape_size_gradients_and_determinism():
    enc = LiteImageEncoder()
    n_params = sum(p.numel() for p in enc.parameters())
    assert 1_000_000 < n_params < 8_000_000
    x = torch.randn(1, 3, 1024, 1024)
    out = enc(x)
    assert out.shape == (1, 256, 64, 64)
    out.square().mean().backward()
    assert all(p.grad is not None for p in enc.parameters() if p.requires_grad)
    enc.eval()
    with torch.no_grad():
        torch.testing.assert_close(enc(x), enc(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="expects"):
        enc(torch.randn(1, 3, 512, 512))
