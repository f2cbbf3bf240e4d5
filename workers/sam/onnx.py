"""ONNX export of the prompt encoder + mask decoder with the official web-demo contract.

Inputs (float32): ``image_embeddings`` 1×256×64×64, ``point_coords`` 1×N×2 (resized-1024 frame,
dynamic N), ``point_labels`` 1×N (1 positive, 0 negative, 2/3 box corners, −1 padding),
``mask_input`` 1×1×256×256, ``has_mask_input`` [1], ``orig_im_size`` [2] = (H, W).
Outputs: ``masks`` 1×K×H×W logits at the original size, ``iou_predictions`` 1×K,
``low_res_masks`` 1×K×256×256. The single-mask variant (K = 1) returns the best multimask output by
predicted IoU for prompts of at most two points (one click + padding, or a box), else the
single-mask token; the multimask variant returns the three multimask outputs (K = 3).

``OnnxDecoder`` runs an exported file with onnxruntime, building the feeds the way the browser does.
``export_onnx_encoder`` exports the image encoder (input ``image`` 1×3×1024×1024, already normalised
and padded; output ``image_embeddings``) for running it with onnxruntime instead of torch.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from torch import nn

from backend.core.files import atomic_write
from workers.sam.modeling.sam import Sam

INPUT_NAMES = ["image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input", "orig_im_size"]
OUTPUT_NAMES = ["masks", "iou_predictions", "low_res_masks"]


def _stack_as_tokens(x: torch.Tensor, net: nn.Sequential) -> torch.Tensor:
    """Run a ``Conv 2×2/2 → LayerNorm2d → act → Conv 2×2/2 → LayerNorm2d → act → Conv 1×1`` stack (the
    mask downscaling and the prompt maps) on B×C×4h×4w as matrix products in channel-last layout.

    Returns tokens B×(h·w)×C_out in the row-major order of ``flatten(2).transpose(1, 2)``. The result
    equals the stack's own output; only the memory layout differs, so LayerNorm runs over the last axis
    and no 4-D transpose of a large map is needed.
    """
    conv1, ln1, act1, conv2, ln2, act2, conv3 = net
    b, c, big_h, big_w = x.shape
    h, w = big_h // 4, big_w // 4
    # input pixel (4i + 2a + u, 4j + 2e + v): token (i, j), first-level offset (a, e), second-level (u, v)
    x = x.reshape(b, c, h, 2, 2, w, 2, 2).permute(0, 2, 5, 3, 6, 1, 4, 7).reshape(b, h * w, 4, c * 4)
    y = x @ conv1.weight.reshape(conv1.out_channels, -1).t() + conv1.bias
    y = act1(F.layer_norm(y, (conv1.out_channels,), ln1.weight, ln1.bias, ln1.eps))
    w2 = conv2.weight.permute(0, 2, 3, 1).reshape(conv2.out_channels, -1)  # inputs ordered (a, e, channel)
    y = y.reshape(b, h * w, -1) @ w2.t() + conv2.bias
    y = act2(F.layer_norm(y, (conv2.out_channels,), ln2.weight, ln2.bias, ln2.eps))
    return y @ conv3.weight.reshape(conv3.out_channels, -1).t() + conv3.bias


def _masks_from_tokens(src: torch.Tensor, hyper_in: torch.Tensor, upscaling: nn.Sequential, h: int,
                       w: int) -> torch.Tensor:
    """``MaskDecoder``'s upscaling and hypernetwork product on image tokens B×(h·w)×C → B×K×4h×4w.

    Each 2×2/2 transposed convolution is one matrix product whose outputs are the four sub-pixels of
    a token; LayerNorm and GELU act per pixel, so the sub-pixels stay grouped under their token until
    the K masks are computed and only those K maps are put in image order.
    """
    ct1, ln, act1, ct2, act2 = upscaling
    b = src.shape[0]
    c1, c2 = ct1.out_channels, ct2.out_channels
    w1 = ct1.weight.permute(0, 2, 3, 1).reshape(ct1.in_channels, -1)  # outputs ordered (a, e, channel)
    y = (src @ w1 + ct1.bias.repeat(4)).reshape(b, h * w, 4, c1)
    y = act1(F.layer_norm(y, (c1,), ln.weight, ln.bias, ln.eps))
    w2 = ct2.weight.permute(0, 2, 3, 1).reshape(ct2.in_channels, -1)
    y = act2(y @ w2 + ct2.bias.repeat(4)).reshape(b, h * w * 16, c2)
    k = hyper_in.shape[1]
    masks = y @ hyper_in.transpose(1, 2)  # B×(h·w·16)×K, rows (i, j, a, e, u, v)
    masks = masks.reshape(b, h, w, 2, 2, 2, 2, k).permute(0, 7, 1, 3, 5, 2, 4, 6)
    return masks.reshape(b, k, 4 * h, 4 * w)


class DecoderForExport(nn.Module):
    """The decoder path of ``Sam`` written with export-friendly ops (no Python branching on data).

    The graph keeps the image features as tokens (channel-last) from the prompt convolutions to the
    masks: the same arithmetic as ``Sam``'s NCHW modules, several times fewer transposes and reductions
    across channels, which is what onnxruntime (native and WebAssembly) spends its time on otherwise.
    """

    def __init__(self, model: Sam, return_single_mask: bool, few_tokens: bool = True):
        super().__init__()
        self.model = model
        self.return_single_mask = return_single_mask
        self.few_tokens = few_tokens
        self.img_size = model.image_encoder.img_size if hasattr(model.image_encoder, "img_size") else 1024

    def _sparse(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        pe = self.model.prompt_encoder
        coords = (coords + 0.5) / self.img_size
        emb = pe.pe_layer._pe_encoding(coords)  # B×N×C
        lab = labels.unsqueeze(-1)
        emb = emb * (lab != -1)
        emb = emb + pe.not_a_point_embed.weight * (lab == -1)
        for k in range(pe.num_point_embeddings):
            emb = emb + pe.point_embeddings[k].weight * (lab == k)
        return emb

    def _dense_tokens(self, coords: torch.Tensor, labels: torch.Tensor, mask_input: torch.Tensor | None,
                      has_mask_input: torch.Tensor | None) -> torch.Tensor:
        """The dense prompt embedding as tokens B×hw×C: the mask prompt (or no-mask embedding) plus,
        for archs with ``PromptMaps`` (a fixed property of the model), the drawn clicks and box."""
        pe = self.model.prompt_encoder
        dense = pe.no_mask_embed.weight.unsqueeze(0)  # 1×1×C
        if mask_input is not None:
            dense = has_mask_input * _stack_as_tokens(mask_input, pe.mask_downscaling) + (1 - has_mask_input) * dense
        if pe.prompt_maps is not None:
            dense = dense + _stack_as_tokens(pe.prompt_maps.render(coords, labels), pe.prompt_maps.net)
        return dense

    def _decode(self, image_embeddings: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Two-way transformer and heads → image tokens B×hw×C, hypernetwork weights B×4×C/8, IoU B×4."""
        decoder = self.model.mask_decoder
        keys = image_embeddings.flatten(2).transpose(1, 2) + dense
        keys = keys.expand(sparse.shape[0], -1, -1)
        key_pe = self.model.prompt_encoder.get_dense_pe().flatten(2).transpose(1, 2)
        hs, src = decoder.transformer.forward_tokens(keys, key_pe, decoder.prompt_tokens(sparse), self.few_tokens)
        hyper_in, scores = decoder.heads(hs)
        return src, hyper_in, scores

    def _upscale(self, masks: torch.Tensor, orig_im_size: torch.Tensor) -> torch.Tensor:
        masks = F.interpolate(masks, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False)
        scale = self.img_size / torch.max(orig_im_size)
        resized = torch.floor(orig_im_size * scale + 0.5).to(torch.int64)
        masks = masks[..., : resized[0], : resized[1]]
        size = orig_im_size.to(torch.int64)
        return F.interpolate(masks, size=(size[0], size[1]), mode="bilinear", align_corners=False)

    def forward(self, image_embeddings, point_coords, point_labels, mask_input, has_mask_input, orig_im_size):
        sparse = self._sparse(point_coords, point_labels)
        dense = self._dense_tokens(point_coords, point_labels, mask_input, has_mask_input)
        src, hyper_in, scores = self._decode(image_embeddings, sparse, dense)
        if self.return_single_mask:
            # Few points (one click + padding, or a box) are ambiguous: take the best of the three
            # multimask outputs. More points: the single-mask token. Done arithmetically so the
            # exported graph has no data-dependent branch; only the chosen mask is computed.
            n = point_coords.shape[1]
            bias = torch.tensor([1000.0, 0.0, 0.0, 0.0], device=scores.device) * (n - 2.5)
            best = torch.argmax(scores + bias, dim=1)
            rows = torch.arange(scores.shape[0])
            hyper_in = hyper_in[rows, best].unsqueeze(1)
            scores = scores[rows, best].unsqueeze(1)
        else:
            hyper_in, scores = hyper_in[:, 1:], scores[:, 1:]
        h, w = self.model.prompt_encoder.image_embedding_size
        masks = _masks_from_tokens(src, hyper_in, self.model.mask_decoder.output_upscaling, h, w)
        upscaled = self._upscale(masks, orig_im_size)
        return upscaled, scores, masks


class PromptBatchForExport(DecoderForExport):
    """B point prompts on one image embedding, no mask input: what the automatic generator decodes.

    Inputs ``image_embeddings`` 1×256×64×64, ``point_coords`` B×N×2 (1024 frame, padding included),
    ``point_labels`` B×N; outputs all four masks ``low_res_masks`` B×4×256×256 and ``iou_predictions``
    B×4 (index 0 is the single-mask token, 1–3 the multimask outputs, as ``MaskDecoder.predict_masks``).
    """

    def __init__(self, model: Sam):
        super().__init__(model, return_single_mask=False)

    def forward(self, image_embeddings, point_coords, point_labels):
        sparse = self._sparse(point_coords, point_labels)
        dense = self._dense_tokens(point_coords, point_labels, None, None)
        src, hyper_in, scores = self._decode(image_embeddings, sparse, dense)
        h, w = self.model.prompt_encoder.image_embedding_size
        return _masks_from_tokens(src, hyper_in, self.model.mask_decoder.output_upscaling, h, w), scores


def _atomic_onnx_export(module: nn.Module, args: tuple, path: Path, **kwargs) -> Path:
    """``torch.onnx.export`` (TorchScript exporter) into a temporary file renamed onto ``path``."""
    def write(tmp: Path) -> None:
        with torch.no_grad():
            torch.onnx.export(module, args, str(tmp), do_constant_folding=True, dynamo=False, **kwargs)

    return atomic_write(path, write)


#: the exported decoder takes the ``few_tokens`` order while ``point_coords`` has at most this many
#: points (padding and box corners included); past it the usual order is cheaper. In onnxruntime on a
#: 2-core VM (``benchmarks/bench_decoder.py --points``) the two cost the same at about 12 points.
FEW_TOKENS_MAX_POINTS = 11


def _branch_on_points(few: onnx.ModelProto, full: onnx.ModelProto, max_points: int) -> onnx.ModelProto:
    """One model that runs ``few``'s graph while ``point_coords`` has ≤ ``max_points`` points, else
    ``full``'s: an ``If`` node whose branches read the shared inputs and weights from the outer graph.

    Both graphs come from the same module, so they have the same inputs and outputs; weights with
    identical bytes are stored once.
    """
    from onnx import TensorProto, helper, numpy_helper

    inputs = {i.name for i in few.graph.input}
    weights: dict[bytes, str] = {}
    outer: list[onnx.TensorProto] = []

    def branch(model: onnx.ModelProto, prefix: str) -> onnx.GraphProto:
        graph = model.graph
        renamed = {}
        for init in graph.initializer:
            key = f"{init.data_type}:{list(init.dims)}:".encode() + numpy_helper.to_array(init).tobytes()
            if key not in weights:
                weights[key] = f"w{len(weights)}"
                copy = onnx.TensorProto()
                copy.CopyFrom(init)
                copy.name = weights[key]
                outer.append(copy)
            renamed[init.name] = weights[key]

        def name(n: str) -> str:
            return n if n in inputs or not n else renamed.get(n, prefix + n)

        nodes = []
        for node in graph.node:
            if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
                raise ValueError(f"node {node.name} has a subgraph; the decoder export does not expect one")
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            copy.name = prefix + node.name
            copy.input[:] = [name(x) for x in node.input]
            copy.output[:] = [name(x) for x in node.output]
            nodes.append(copy)
        outputs = []
        for out in graph.output:
            copy = onnx.ValueInfoProto()
            copy.CopyFrom(out)
            copy.name = name(out.name)
            outputs.append(copy)
        return helper.make_graph(nodes, prefix.strip("/"), [], outputs)

    then_branch = branch(few, "few/")
    else_branch = branch(full, "full/")
    count = [
        helper.make_node("Shape", ["point_coords"], ["num_points"], start=1, end=2),
        helper.make_node("Constant", [], ["max_points"],
                         value=helper.make_tensor("max_points", TensorProto.INT64, [1], [max_points])),
        helper.make_node("LessOrEqual", ["num_points", "max_points"], ["few_points"]),
        helper.make_node("If", ["few_points"], [o.name for o in few.graph.output], name="choose_order",
                         then_branch=then_branch, else_branch=else_branch),
    ]
    graph = helper.make_graph(count, few.graph.name, list(few.graph.input), list(few.graph.output), outer)
    merged = helper.make_model(graph, opset_imports=list(few.opset_import), producer_name="maskloop")
    merged.ir_version = few.ir_version
    onnx.checker.check_model(merged)
    return merged


def export_onnx_decoder(model: Sam, path: str | Path, *, return_single_mask: bool = True, opset: int = 17,
                        quantize: bool = False, max_few_points: int = FEW_TOKENS_MAX_POINTS) -> Path:
    """Export the decoder of ``model`` to ``path`` (written atomically); returns the path.

    The file holds the decoder twice over the same weights, in the ``few_tokens`` order and in the
    usual one, and picks by the number of points (``max_few_points``; 0 exports the usual order alone).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    c = model.prompt_encoder.embed_dim
    h, w = model.prompt_encoder.image_embedding_size
    dummy = (
        torch.randn(1, c, h, w),
        torch.randint(0, 1024, (1, 5, 2)).float(),
        torch.randint(0, 4, (1, 5)).float(),
        torch.randn(1, 1, 4 * h, 4 * w),
        torch.tensor([1.0]),
        torch.tensor([480.0, 640.0]),
    )
    kwargs = dict(input_names=INPUT_NAMES, output_names=OUTPUT_NAMES, opset_version=opset,
                  dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}})
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".tmp-") as tmp:

        def export(few_tokens: bool) -> Path:
            out = _atomic_onnx_export(DecoderForExport(model, return_single_mask, few_tokens).eval(), dummy,
                                      Path(tmp) / f"few{few_tokens}.onnx", **kwargs)
            if quantize:  # each order on its own: the quantizer does not follow weights into If branches
                from onnxruntime.quantization import QuantType, quantize_dynamic

                quantize_dynamic(out, out.with_suffix(".q.onnx"), weight_type=QuantType.QUInt8)
                out = out.with_suffix(".q.onnx")
            return out

        result = export(few_tokens=False)
        if max_few_points > 0:
            merged = _branch_on_points(onnx.load(export(few_tokens=True)), onnx.load(result), max_few_points)
            result = Path(tmp) / "both.onnx"
            onnx.save(merged, result)
        os.replace(result, path)
    return path


def export_onnx_encoder(model: Sam, path: str | Path, *, opset: int = 17) -> Path:
    """Export ``model.image_encoder``: input ``image`` 1×3×S×S (normalised and padded, as
    ``Sam.preprocess`` returns it), output ``image_embeddings`` 1×256×64×64. Written atomically."""
    encoder = model.cpu().eval().image_encoder
    size = getattr(encoder, "img_size", 1024)
    return _atomic_onnx_export(encoder, (torch.randn(1, 3, size, size),), Path(path), input_names=["image"],
                               output_names=["image_embeddings"], opset_version=opset)


DECODERS = ("auto", "torch", "onnx")


def resolve_decoder(decoder: str, device: str | torch.device) -> str:
    """``"torch"`` or ``"onnx"`` for a ``decoder`` choice: ``"auto"`` is onnx on a CPU, torch elsewhere."""
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {', '.join(DECODERS)}; got {decoder!r}")
    if decoder == "auto":
        return "onnx" if torch.device(device).type == "cpu" else "torch"
    return decoder


def _cpu_session(path_or_bytes: str | Path | bytes, threads: int):
    """An onnxruntime CPU session with ``threads`` intra-op threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    src = path_or_bytes if isinstance(path_or_bytes, bytes) else str(path_or_bytes)
    return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])


class OnnxDecoder:
    """An exported decoder run with onnxruntime; feeds are built the way the browser client does."""

    def __init__(self, path_or_bytes: str | Path | bytes, threads: int = 1):
        self.session = _cpu_session(path_or_bytes, threads)

    @staticmethod
    def feeds(embedding: np.ndarray, points_xy: np.ndarray | None, labels: np.ndarray | None,
              orig_size: tuple[int, int], box_xyxy: np.ndarray | None = None,
              mask_input: np.ndarray | None = None, img_size: int = 1024) -> dict[str, np.ndarray]:
        """Inputs for clicks/box in ORIGINAL pixels: scaled to the 1024 frame, padded like the web demo."""
        h, w = (int(v) for v in orig_size)
        if min(h, w) < 1:
            raise ValueError(f"orig_size must be (H, W) with positive sides, got {tuple(orig_size)}")
        embedding = np.asarray(embedding, np.float32)
        if embedding.size != 256 * 64 * 64:
            raise ValueError(f"embedding must be 1×256×64×64, got shape {embedding.shape}")
        if mask_input is not None and np.asarray(mask_input).size != 256 * 256:
            raise ValueError(f"mask_input must be 1×1×256×256 low-res logits, got shape {np.shape(mask_input)}")
        scale = img_size / max(h, w)
        coords = np.zeros((0, 2), np.float32) if points_xy is None else np.asarray(points_xy, np.float32).reshape(-1, 2)
        labs = np.zeros((0,), np.float32) if labels is None else np.asarray(labels, np.float32).reshape(-1)
        if coords.shape[0] != labs.shape[0]:
            raise ValueError(f"{coords.shape[0]} points but {labs.shape[0]} labels")
        if box_xyxy is not None:
            coords = np.concatenate([coords, np.asarray(box_xyxy, np.float32).reshape(2, 2)])
            labs = np.concatenate([labs, [2.0, 3.0]]).astype(np.float32)
        else:
            coords = np.concatenate([coords, np.zeros((1, 2), np.float32)])
            labs = np.concatenate([labs, [-1.0]]).astype(np.float32)
        coords = coords * np.array([round(w * scale) / w, round(h * scale) / h], np.float32)
        return {
            "image_embeddings": embedding.reshape(1, 256, 64, 64),
            "point_coords": coords[None].astype(np.float32),
            "point_labels": labs[None].astype(np.float32),
            "mask_input": (np.zeros((1, 1, 256, 256), np.float32) if mask_input is None
                           else np.asarray(mask_input, np.float32).reshape(1, 1, 256, 256)),
            "has_mask_input": np.array([0.0 if mask_input is None else 1.0], np.float32),
            "orig_im_size": np.array([h, w], np.float32),
        }

    def run(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        masks, scores, low_res = self.session.run(OUTPUT_NAMES, feeds)
        return masks, scores, low_res


class OnnxPromptBatchDecoder:
    """``PromptBatchForExport`` of a model, exported in memory and run with onnxruntime.

    On a CPU this decodes a batch of grid points several times faster than the eager torch decoder
    (``benchmarks/bench_automatic.py --decoder``), with the same outputs within float tolerance.
    """

    # prompts per onnxruntime call: on a CPU a few prompts at a time keep the 4096-token activations
    # in cache; 64 at once was ~30 % slower per prompt (benchmarks/bench_automatic.py --points-per-batch)
    CHUNK = 4

    def __init__(self, model: Sam, threads: int | None = None, opset: int = 17):
        import io

        wrapper = PromptBatchForExport(model).eval()
        c = model.prompt_encoder.embed_dim
        h, w = model.prompt_encoder.image_embedding_size
        dummy = (torch.randn(1, c, h, w), torch.rand(3, 2, 2) * 1024, torch.tensor([[1.0, -1.0]] * 3))
        buffer = io.BytesIO()
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                torch.onnx.export(wrapper, dummy, buffer, do_constant_folding=True, dynamo=False,
                                  input_names=["image_embeddings", "point_coords", "point_labels"],
                                  output_names=["low_res_masks", "iou_predictions"], opset_version=opset,
                                  dynamic_axes={"point_coords": {0: "batch", 1: "num_points"},
                                                "point_labels": {0: "batch", 1: "num_points"},
                                                "low_res_masks": {0: "batch"}, "iou_predictions": {0: "batch"}})
        finally:
            model.train(was_training)
        self.embedding_shape = (1, c, h, w)
        self.session = _cpu_session(buffer.getvalue(), int(threads or torch.get_num_threads()))

    def __call__(self, embedding: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor,
                 multimask_output: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """``embedding`` 1×256×64×64, ``coords`` B×N×2 (1024 frame), ``labels`` B×N, without padding.

        Pads each prompt with a not-a-point (as the prompt encoder does without a box) and returns
        low-res logits B×K×256×256 and IoU predictions B×K, K = 3 (multimask) or 1.
        """
        b = coords.shape[0]
        coords = torch.cat([coords.float(), torch.zeros(b, 1, 2)], dim=1).numpy()
        labels = torch.cat([labels.float(), -torch.ones(b, 1)], dim=1).numpy()
        emb = embedding.detach().float().cpu().numpy().reshape(self.embedding_shape)
        sl = slice(1, None) if multimask_output else slice(0, 1)
        low_res, scores = [], []
        for i in range(0, b, self.CHUNK):
            lr, sc = self.session.run(None, {"image_embeddings": emb, "point_coords": coords[i:i + self.CHUNK],
                                             "point_labels": labels[i:i + self.CHUNK]})
            low_res.append(lr[:, sl])
            scores.append(sc[:, sl])
        if not low_res:
            k = 3 if multimask_output else 1
            return torch.zeros(0, k, 4 * self.embedding_shape[2], 4 * self.embedding_shape[3]), torch.zeros(0, k)
        return torch.from_numpy(np.concatenate(low_res)), torch.from_numpy(np.concatenate(scores))


class OnnxPredictor:
    """``SamPredictor``'s ``set_image``/``predict`` surface with the decoder run by onnxruntime.

    The image is embedded by the torch encoder; every prompt is decoded by the two exported graphs
    the browser runs (single-mask and multimask, exported once, in a temporary folder, from the
    model's current weights). Used by the evaluation harness on a CPU, where it is several times
    faster than the eager torch decoder and measures exactly what annotators get.
    """

    def __init__(self, model: Sam, threads: int | None = None):
        from workers.sam.predictor import SamPredictor

        self.model = model.cpu().eval()
        self._encoder = SamPredictor(self.model)
        threads = int(threads or torch.get_num_threads())
        with tempfile.TemporaryDirectory(prefix="maskloop-onnx-") as tmp:
            single = export_onnx_decoder(self.model, Path(tmp) / "decoder.onnx", return_single_mask=True)
            multi = export_onnx_decoder(self.model, Path(tmp) / "decoder_multimask.onnx", return_single_mask=False)
            self._single = OnnxDecoder(single.read_bytes(), threads)
            self._multi = OnnxDecoder(multi.read_bytes(), threads)
        self._embedding: np.ndarray | None = None
        self._size: tuple[int, int] | None = None

    def set_image(self, image: np.ndarray) -> None:
        """Embed an H×W×3 uint8 RGB image (checked as ``SamPredictor.set_image`` checks it)."""
        self._encoder.set_image(image)
        self._embedding = self._encoder.get_image_embedding().float().cpu().numpy()
        self._size = (int(image.shape[0]), int(image.shape[1]))

    def predict(self, point_coords: np.ndarray | None = None, point_labels: np.ndarray | None = None,
                box: np.ndarray | None = None, mask_input: np.ndarray | None = None,
                multimask_output: bool = True, return_logits: bool = False
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Prompts in original pixels → masks K×H×W, scores K, low-res logits K×256×256.

        K = 3 with ``multimask_output``; else K = 1 and, as in the browser, a single click (or a
        box) returns its best multimask output and more points the single-mask output.
        """
        if self._embedding is None or self._size is None:
            raise RuntimeError("call set_image before predict")
        # the same ValueErrors as SamPredictor.predict: points outside the image, mismatched labels, bad box/mask
        self._encoder._check_prompts(point_coords, point_labels, box, mask_input)
        feeds = OnnxDecoder.feeds(self._embedding, point_coords, point_labels, self._size, box_xyxy=box,
                                  mask_input=mask_input)
        masks, scores, low_res = (self._multi if multimask_output else self._single).run(feeds)
        masks = masks[0] if return_logits else masks[0] > self.model.mask_threshold
        return masks, scores[0], low_res[0]
