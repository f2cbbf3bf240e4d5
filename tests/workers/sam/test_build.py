"""build_sam: official key layouts load strictly, Maskloop checkpoints round-trip, bad files fail clearly."""
from __future__ import annotations

import pytest
import torch

from workers.sam import build_sam, sam_model_registry, save_checkpoint
from workers.sam import build as build_module
from workers.sam.build import build_model, check_state_dict, guess_arch

# parameter counts measured on the official modules (sam-reference-details.md §1.2, §1.3)
OFFICIAL_PARAMS = {"vit_b": 93_735_472, "vit_l": 312_342_832, "vit_h": 641_090_608, "vit_t": 10_130_092}


def _meta_model(arch: str):
    with torch.device("meta"):
        return build_model(arch)


@pytest.mark.parametrize("arch", ["vit_b", "vit_l", "vit_h", "vit_t"])
def test_state_dict_matches_official_layout(arch, layout, make_state_dict):
    rows = layout(arch)
    model = _meta_model(arch)
    ours = model.state_dict()
    assert [k for k, _, _ in rows] == list(ours), "keys (and their order) differ from the official layout"
    for key, shape, dtype in rows:
        assert tuple(ours[key].shape) == shape, key
        assert str(ours[key].dtype) == f"torch.{dtype}", key
    # strict load of a state_dict built from the table (meta tensors: no allocation, vit_h stays cheap)
    model.load_state_dict(make_state_dict(rows, device="meta"), strict=True, assign=True)


@pytest.mark.parametrize("arch", sorted(OFFICIAL_PARAMS))
def test_parameter_counts_match_official(arch):
    model = _meta_model(arch)
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMS[arch]
    # pixel_mean/std are non-persistent: official checkpoints do not carry them
    assert not any(k.startswith("pixel_") for k in model.state_dict())


def test_official_raw_vit_t_checkpoint_loads_through_build_sam(tmp_path, layout, make_state_dict):
    rows = layout("vit_t")
    state = make_state_dict(rows, seed=3)
    path = tmp_path / "mobile_sam.pt"
    torch.save(state, path)
    model = build_sam("vit_t", checkpoint=path, device="cpu")
    loaded = model.state_dict()
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key
    assert not model.training
    # some MobileSAM exports lack BatchNorm num_batches_tracked: still loads
    trimmed = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(trimmed, path)
    model = build_sam("vit_t", checkpoint=path, device="cpu")
    key = "image_encoder.layers.1.blocks.0.attn.qkv.weight"
    assert torch.equal(model.state_dict()[key], state[key])
    # arch None guesses the architecture from a raw state_dict
    assert build_sam(None, checkpoint=path, device="cpu").arch == "vit_t"


def test_maskloop_checkpoint_round_trip(tmp_path):
    torch.manual_seed(1)
    model = build_model("lite")
    path = save_checkpoint(model, tmp_path / "sub" / "model.pt", "lite", {"step": 7})
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temp files left behind
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"arch", "model", "meta"} and raw["arch"] == "lite" and raw["meta"] == {"step": 7}
    for builder_arch in ("lite", None, "default"):
        loaded = build_sam(builder_arch, checkpoint=path, device="cpu")
        assert loaded.arch == "lite" and loaded.meta == {"step": 7}
        for key, value in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key
    assert sam_model_registry["lite"](checkpoint=path, device="cpu").arch == "lite"


def test_save_checkpoint_is_atomic(tmp_path, monkeypatch):
    model = build_model("lite")
    path = save_checkpoint(model, tmp_path / "model.pt", "lite", {"v": 1})
    before = path.read_bytes()

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        save_checkpoint(model, path, "lite", {"v": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
    with pytest.raises(ValueError, match="unknown arch"):
        save_checkpoint(model, tmp_path / "x.pt", "vit_q", {})


def test_wrong_arch_checkpoint_names_keys_and_guesses_arch(tmp_path):
    path = tmp_path / "mobile_sam.pt"
    torch.save(build_model("vit_t").state_dict(), path)
    with pytest.raises(ValueError) as err:
        build_sam("lite", checkpoint=path, device="cpu")
    msg = str(err.value)
    assert "missing keys" in msg and "image_encoder.stem" in msg
    assert "unexpected keys" in msg and "image_encoder.patch_embed.seq" in msg
    assert "'vit_t'" in msg


def test_vit_b_weights_into_vit_h_report_missing_blocks_and_shapes(layout, make_state_dict):
    rows = layout("vit_b")
    state = make_state_dict(rows, device="meta")
    with pytest.raises(ValueError) as err:
        check_state_dict(_meta_model("vit_h"), state, "vit_h")
    msg = str(err.value)
    assert "missing keys" in msg and "image_encoder.blocks.12." in msg
    assert "shape mismatches" in msg and "(1, 64, 64, 768) vs model (1, 64, 64, 1280)" in msg
    assert "'vit_b'" in msg
    assert guess_arch(state) == "vit_b"


def test_maskloop_checkpoint_for_another_arch_is_refused(tmp_path):
    path = save_checkpoint(build_model("lite"), tmp_path / "m.pt", "lite", {})
    with pytest.raises(ValueError, match="saved for arch 'lite', not 'vit_t'"):
        build_sam("vit_t", checkpoint=path, device="cpu")


@pytest.mark.parametrize("content, match", [
    (b"this is not a checkpoint", "corrupt"),
    (b"", "corrupt"),
])
def test_corrupt_file(tmp_path, content, match):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match):
        build_sam("lite", checkpoint=path)


def test_truncated_checkpoint(tmp_path):
    path = save_checkpoint(build_model("lite"), tmp_path / "m.pt", "lite", {})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt"):
        build_sam("lite", checkpoint=path)


def test_non_dict_and_non_tensor_content(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(ValueError, match="holds a list"):
        build_sam("lite", checkpoint=path)
    torch.save({"a": "text"}, path)
    with pytest.raises(ValueError, match="non-tensor"):
        build_sam("lite", checkpoint=path)


def test_missing_file_unknown_arch_and_missing_default(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        build_sam("lite", checkpoint=tmp_path / "nope.pt")
    with pytest.raises(ValueError, match="unknown arch 'vit_x'"):
        build_sam("vit_x")
    monkeypatch.setattr(build_module, "DEFAULT_MODEL_PATH", tmp_path / "models" / "default" / "model.pt")
    with pytest.raises(FileNotFoundError, match="default model has not been trained/shipped"):
        build_sam("default")


def test_default_loads_shipped_file(tmp_path, monkeypatch):
    target = tmp_path / "models" / "default" / "model.pt"
    model = build_model("lite")
    save_checkpoint(model, target, "lite", {"shipped": True})
    monkeypatch.setattr(build_module, "DEFAULT_MODEL_PATH", target)
    loaded = build_sam("default", device="cpu")
    assert loaded.arch == "lite" and loaded.meta == {"shipped": True}


def test_lite_checkpoint_starts_lite_clicks_for_finetuning_only(tmp_path):
    torch.manual_seed(3)
    lite = build_model("lite").eval()
    path = save_checkpoint(lite, tmp_path / "lite.pt", "lite", {"v": 1})
    # build_sam stays strict: a lite checkpoint is not a lite_clicks model
    with pytest.raises(ValueError, match="saved for arch 'lite', not 'lite_clicks'"):
        build_sam("lite_clicks", checkpoint=path, device="cpu")
    model = build_module.build_for_finetuning("lite_clicks", path, device="cpu")
    assert model.arch == "lite_clicks" and model.prompt_encoder.prompt_maps is not None
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in lite.state_dict().items())
    # the new maps start at zero, so the first prompt decodes exactly as the lite checkpoint did
    emb = torch.randn(1, 256, 64, 64)
    prompts = dict(points=(torch.tensor([[[300.0, 200.0]]]), torch.tensor([[1]])), boxes=None, masks=None)
    with torch.no_grad():
        outs = [m.mask_decoder(emb, m.prompt_encoder.get_dense_pe(), *m.prompt_encoder(**prompts), True)
                for m in (lite, model)]
    torch.testing.assert_close(outs[0], outs[1])
    # a raw lite_clicks state_dict is recognised by its prompt maps; a plain lite one is not lite_clicks
    assert guess_arch(model.state_dict()) == "lite_clicks" and guess_arch(lite.state_dict()) == "lite"
    # an unrelated checkpoint still fails strictly, naming the keys
    other = save_checkpoint(build_model("vit_t"), tmp_path / "t.pt", "vit_t")
    with pytest.raises(ValueError, match="saved for arch 'vit_t'"):
        build_module.build_for_finetuning("lite_clicks", other, device="cpu")
