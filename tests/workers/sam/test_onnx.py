"""The exported ONNX decoder equals the torch decoder (web-demo contract)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from workers.sam.build import build_sam
from workers.sam.onnx import (INPUT_NAMES, OUTPUT_NAMES, DecoderForExport, OnnxDecoder, export_onnx_decoder,
                              export_onnx_encoder)
from workers.sam.predictor import SamPredictor


@pytest.fixture(scope="module", params=["lite", "lite_clicks"])
def exported(request, tmp_path_factory):
    torch.manual_seed(0)
    model = build_sam(request.param, device="cpu").eval()
    if model.prompt_encoder.prompt_maps is not None:  # starts at zero: give the drawn prompts some weight
        with torch.no_grad():
            last = model.prompt_encoder.prompt_maps.net[-1]
            last.weight.copy_(torch.randn_like(last.weight) * 0.1)
    d = tmp_path_factory.mktemp("onnx")
    single = export_onnx_decoder(model, d / "decoder.onnx")
    multi = export_onnx_decoder(model, d / "decoder_multimask.onnx", return_single_mask=False)
    return model, OnnxDecoder(single), OnnxDecoder(multi), single


def test_contract_names_and_dynamic_points(exported):
    _, _, _, path = exported
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == INPUT_NAMES
    assert [o.name for o in graph.output] == OUTPUT_NAMES
    coords = next(i for i in graph.input if i.name == "point_coords")
    assert coords.type.tensor_type.shape.dim[1].dim_param  # symbolic number of points


@pytest.mark.parametrize("with_mask", [False, True])
@pytest.mark.parametrize("n_points,orig,box", [(1, (480, 640), False), (2, (300, 200), False),
                                               (5, (640, 427), False), (1, (123, 77), True)])
def test_onnx_matches_torch(exported, n_points, with_mask, orig, box):
    model, single, multi, _ = exported
    rng = np.random.default_rng(n_points + 10 * with_mask)
    emb = rng.standard_normal((1, 256, 64, 64)).astype(np.float32)
    pts = rng.random((n_points, 2)) * [orig[1], orig[0]]
    box_xyxy = np.sort(rng.random((2, 2)) * [orig[1], orig[0]], axis=0).ravel() if box else None
    feeds = OnnxDecoder.feeds(emb, pts, rng.integers(0, 2, n_points), orig, box_xyxy=box_xyxy,
                              mask_input=rng.standard_normal((256, 256)) if with_mask else None)
    assert feeds["point_coords"].shape[1] == n_points + (2 if box else 1)
    for decoder, single_mask in ((single, True), (multi, False)):
        masks, scores, low = decoder.run(feeds)
        with torch.no_grad():
            t_masks, t_scores, t_low = DecoderForExport(model, single_mask)(
                *[torch.from_numpy(feeds[k]) for k in INPUT_NAMES])
        assert masks.shape == (1, 1 if single_mask else 3, *orig)
        assert np.abs(masks - t_masks.numpy()).max() < 1e-3
        assert np.abs(low - t_low.numpy()).max() < 1e-3
        assert np.abs(scores - t_scores.numpy()).max() < 1e-3
        # Thresholded masks agree wherever the logit is not within float noise of 0.
        decided = np.abs(t_masks.numpy()) > 1e-4
        assert ((masks > 0) == (t_masks.numpy() > 0))[decided].all()


def test_onnx_matches_predictor_semantics(exported):
    """One click: the single-mask ONNX output is the best multimask output of SamPredictor."""
    model, single, _, _ = exported
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    predictor = SamPredictor(model)
    predictor.set_image(image)
    emb = predictor.get_image_embedding().numpy()
    point = np.array([[80.0, 60.0]])
    masks, scores, low = predictor.predict(point_coords=point, point_labels=np.array([1]), multimask_output=True,
                                           return_logits=True)
    best = int(np.argmax(scores))
    o_masks, o_scores, o_low = single.run(OnnxDecoder.feeds(emb, point, [1], (120, 160)))
    assert abs(float(o_scores[0, 0]) - float(scores[best])) < 1e-3
    assert np.abs(o_low[0, 0] - low[best]).max() < 1e-3
    assert np.abs(o_masks[0, 0] - masks[best]).max() < 1e-3


@pytest.mark.parametrize("kwargs,match", [
    ({"points_xy": np.zeros((2, 2)), "labels": [1]}, "2 points but 1 labels"),
    ({"embedding": np.zeros((1, 256, 32, 32))}, "embedding must be 1×256×64×64"),
    ({"orig_size": (0, 10)}, "orig_size must be"),
    ({"mask_input": np.zeros((128, 128))}, "mask_input must be 1×1×256×256"),
])
def test_feeds_reject_bad_input(kwargs, match):
    args = {"embedding": np.zeros((1, 256, 64, 64), np.float32), "points_xy": [[1.0, 2.0]], "labels": [1],
            "orig_size": (10, 10), **kwargs}
    with pytest.raises(ValueError, match=match):
        OnnxDecoder.feeds(**args)


def test_quantized_export_runs_and_is_smaller(exported, tmp_path):
    model, single, _, path = exported
    qpath = export_onnx_decoder(model, tmp_path / "q.onnx", quantize=True)
    assert qpath.stat().st_size < 0.6 * path.stat().st_size
    rng = np.random.default_rng(7)
    feeds = OnnxDecoder.feeds(rng.standard_normal((1, 256, 64, 64)).astype(np.float32), [[30.0, 40.0]], [1],
                              (100, 150))
    q_masks, q_scores, _ = OnnxDecoder(qpath).run(feeds)
    f_masks, f_scores, _ = single.run(feeds)
    assert q_masks.shape == f_masks.shape == (1, 1, 100, 150) and np.isfinite(q_masks).all()
    # Weight quantisation perturbs the logits but the masks stay close.
    inter, union = ((q_masks > 0) & (f_masks > 0)).sum(), ((q_masks > 0) | (f_masks > 0)).sum()
    assert union == 0 or inter / union > 0.8


def test_failed_export_leaves_nothing(exported, tmp_path):
    model = exported[0]
    with pytest.raises(Exception):
        export_onnx_decoder(model, tmp_path / "out" / "bad.onnx", opset=1)
    assert list((tmp_path / "out").iterdir()) == []


def test_encoder_export_matches_torch(exported, tmp_path):
    import onnxruntime as ort

    model = exported[0]
    path = export_onnx_encoder(model, tmp_path / "encoder.onnx")
    x = model.preprocess(torch.rand(1, 3, 600, 1024) * 255)
    with torch.no_grad():
        ref = model.image_encoder(x).numpy()
    out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})[0]
    assert out.shape == (1, 256, 64, 64)
    assert np.abs(out - ref).max() < 1e-3


def test_onnx_predictor_matches_sam_predictor(exported):
    """OnnxPredictor (browser graphs) gives SamPredictor's masks for a click session."""
    from workers.sam.onnx import OnnxPredictor

    model = exported[0]
    rng = np.random.default_rng(5)
    image = rng.integers(0, 255, (90, 130, 3), dtype=np.uint8)
    torch_pred, onnx_pred = SamPredictor(model), OnnxPredictor(model, threads=1)
    torch_pred.set_image(image)
    onnx_pred.set_image(image)
    pts, labels = np.array([[60.0, 40.0]]), np.array([1])
    t_masks, t_scores, t_low = torch_pred.predict(point_coords=pts, point_labels=labels, return_logits=True)
    o_masks, o_scores, o_low = onnx_pred.predict(point_coords=pts, point_labels=labels, return_logits=True)
    assert o_masks.shape == t_masks.shape == (3, 90, 130)
    assert np.abs(o_masks - t_masks).max() < 1e-3
    assert np.abs(o_scores - t_scores).max() < 1e-3
    best = int(np.argmax(t_scores))
    pts, labels = np.array([[60.0, 40.0], [10.0, 80.0]]), np.array([1, 0])  # a second click + previous logits
    t_masks, t_scores, _ = torch_pred.predict(point_coords=pts, point_labels=labels, mask_input=t_low[best][None],
                                              multimask_output=False)
    o_masks, o_scores, _ = onnx_pred.predict(point_coords=pts, point_labels=labels, mask_input=o_low[best][None],
                                             multimask_output=False)
    assert o_masks.dtype == bool and o_masks.shape == (1, 90, 130)
    assert (o_masks != t_masks).mean() < 1e-3
    assert np.abs(o_scores - t_scores).max() < 1e-3
    with pytest.raises(ValueError, match="outside"):
        onnx_pred.predict(point_coords=np.array([[200.0, 40.0]]), point_labels=np.array([1]))
    with pytest.raises(ValueError, match="label"):
        onnx_pred.predict(point_coords=pts, point_labels=np.array([1]))
    with pytest.raises(RuntimeError, match="set_image"):
        OnnxPredictor(model, threads=1).predict(point_coords=pts, point_labels=labels)


def test_grid_batch_decoder_matches_torch_prompt_path(exported):
    """The automatic generator's batch graph equals the prompt encoder + decoder (prompt maps included)."""
    from workers.sam.onnx import OnnxPromptBatchDecoder

    model = exported[0]
    rng = np.random.default_rng(5)
    emb = torch.from_numpy(rng.standard_normal((1, 256, 64, 64)).astype(np.float32))
    coords = torch.from_numpy((rng.random((6, 1, 2)) * 1000).astype(np.float32))
    labels = torch.ones(6, 1, dtype=torch.long)
    decoder = OnnxPromptBatchDecoder(model, threads=1)
    assert decoder.CHUNK < 6, "6 prompts must span more than one onnxruntime call"
    low, scores = decoder(emb, coords, labels, multimask_output=True)
    empty = decoder(emb, coords[:0], labels[:0], multimask_output=False)
    assert empty[0].shape == (0, 1, 256, 256) and empty[1].shape == (0, 1)
    with torch.no_grad():
        sparse, dense = model.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        t_low, t_scores = model.mask_decoder(emb, model.prompt_encoder.get_dense_pe(), sparse, dense, True)
    assert low.shape == (6, 3, 256, 256)
    assert float((low - t_low).abs().max()) < 1e-3 and float((scores - t_scores).abs().max()) < 1e-3


def test_channel_last_stacks_equal_the_nchw_modules(exported):
    """The export's token-layout convolution stacks and upscaling compute what the NCHW modules compute."""
    from workers.sam.onnx import _masks_from_tokens, _stack_as_tokens

    model = exported[0]
    pe, decoder = model.prompt_encoder, model.mask_decoder
    torch.manual_seed(1)
    with torch.no_grad():
        mask = torch.randn(2, 1, 256, 256)
        ref = pe.mask_downscaling(mask).flatten(2).transpose(1, 2)
        torch.testing.assert_close(_stack_as_tokens(mask, pe.mask_downscaling), ref, rtol=1e-4, atol=1e-4)
        src, hyper_in = torch.randn(2, 64 * 64, 256), torch.randn(2, 3, 32)
        up = decoder.output_upscaling(src.transpose(1, 2).reshape(2, 256, 64, 64))
        ref = (hyper_in @ up.flatten(2)).reshape(2, 3, 256, 256)
        torch.testing.assert_close(_masks_from_tokens(src, hyper_in, decoder.output_upscaling, 64, 64), ref,
                                   rtol=1e-4, atol=1e-4)


def test_export_switches_order_by_point_count_and_matches_the_predictor(exported, tmp_path):
    """Below and above FEW_TOKENS_MAX_POINTS the exported file (an If over two orders) gives SamPredictor's masks."""
    from workers.sam.onnx import FEW_TOKENS_MAX_POINTS

    model, single, multi, path = exported
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert "If" in ops
    plain = export_onnx_decoder(model, tmp_path / "plain.onnx", max_few_points=0)
    assert "If" not in [n.op_type for n in onnx.load(str(plain)).graph.node]
    rng = np.random.default_rng(11)
    image = rng.integers(0, 255, (100, 140, 3), dtype=np.uint8)
    predictor = SamPredictor(model)
    predictor.set_image(image)
    emb = predictor.get_image_embedding().numpy()
    # points + one padding point: the last two counts are just past the switch
    for clicks in (1, FEW_TOKENS_MAX_POINTS - 1, FEW_TOKENS_MAX_POINTS, FEW_TOKENS_MAX_POINTS + 5):
        pts = rng.random((clicks, 2)) * [139, 99]
        labels = rng.integers(0, 2, clicks)
        prev = rng.standard_normal((1, 256, 256)).astype(np.float32) * 4
        feeds = OnnxDecoder.feeds(emb, pts, labels, (100, 140), mask_input=prev)
        for decoder, multimask in ((single, clicks == 1), (multi, True)):
            if decoder is single and clicks == 1:
                continue  # single-click selection is tested in test_onnx_matches_predictor_semantics
            t_masks, t_scores, t_low = predictor.predict(point_coords=pts, point_labels=labels, mask_input=prev,
                                                         multimask_output=multimask, return_logits=True)
            masks, scores, low = decoder.run(feeds)
            assert masks.shape[1] == t_masks.shape[0]
            assert np.abs(masks[0] - t_masks).max() < 1e-3, clicks
            assert np.abs(low[0] - t_low).max() < 1e-3
            assert np.abs(scores[0] - t_scores).max() < 1e-4
        p_masks, _, _ = OnnxDecoder(plain).run(feeds)
        f_masks, _, _ = single.run(feeds)
        assert np.abs(p_masks - f_masks).max() < 1e-3
