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
import torch
import torch.nn.functional as F
from torch import nn

from backend.core.files import atomic_write
from workers.sam.modeling.sam import Sam

INPUT_NAMES = ["image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input", "orig_im_size"]
OUTPUT_NAMES = ["masks", "iou_predictions", "low_res_masks"]


class DecoderForExport(nn.Module):
    """The decoder path of ``Sam`` written with export-friendly ops (no Python branching on data)."""

    def __init__(self, model: Sam, return_single_mask: bool):
        super().__init__()
        self.model = model
        self.return_single_mask = return_single_mask
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

    def _dense(self, mask_input: torch.Tensor, has_mask_input: torch.Tensor) -> torch.Tensor:
        pe = self.model.prompt_encoder
        downscaled = pe.mask_downscaling(mask_input)
        no_mask = pe.no_mask_embed.weight.reshape(1, -1, 1, 1)
        return has_mask_input * downscaled + (1 - has_mask_input) * no_mask

    def _with_prompt_maps(self, dense: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Add the drawn clicks and box for archs that have ``PromptMaps`` (a fixed property of the model)."""
        maps = self.model.prompt_encoder.prompt_maps
        return dense if maps is None else dense + maps(coords, labels)

    def _upscale(self, masks: torch.Tensor, orig_im_size: torch.Tensor) -> torch.Tensor:
        masks = F.interpolate(masks, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False)
        scale = self.img_size / torch.max(orig_im_size)
        resized = torch.floor(orig_im_size * scale + 0.5).to(torch.int64)
        masks = masks[..., : resized[0], : resized[1]]
        size = orig_im_size.to(torch.int64)
        return F.interpolate(masks, size=(size[0], size[1]), mode="bilinear", align_corners=False)

    def forward(self, image_embeddings, point_coords, point_labels, mask_input, has_mask_input, orig_im_size):
        sparse = self._sparse(point_coords, point_labels)
        dense = self._with_prompt_maps(self._dense(mask_input, has_mask_input), point_coords, point_labels)
        masks, scores = self.model.mask_decoder.predict_masks(
            image_embeddings=image_embeddings, image_pe=self.model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense)
        if self.return_single_mask:
            # Few points (one click + padding, or a box) are ambiguous: take the best of the three
            # multimask outputs. More points: the single-mask token. Done arithmetically so the
            # exported graph has no data-dependent branch.
            n = point_coords.shape[1]
            bias = torch.tensor([1000.0, 0.0, 0.0, 0.0], device=scores.device) * (n - 2.5)
            best = torch.argmax(scores + bias, dim=1)
            masks = masks[torch.arange(masks.shape[0]), best].unsqueeze(1)
            scores = scores[torch.arange(scores.shape[0]), best].unsqueeze(1)
        else:
            masks, scores = masks[:, 1:], scores[:, 1:]
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
        pe = self.model.prompt_encoder
        sparse = self._sparse(point_coords, point_labels)
        h, w = pe.image_embedding_size
        dense = pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(sparse.shape[0], -1, h, w)
        dense = self._with_prompt_maps(dense, point_coords, point_labels)
        return self.model.mask_decoder.predict_masks(
            image_embeddings=image_embeddings, image_pe=pe.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense)


def _atomic_onnx_export(module: nn.Module, args: tuple, path: Path, **kwargs) -> Path:
    """``torch.onnx.export`` (TorchScript exporter) into a temporary file renamed onto ``path``."""
    def write(tmp: Path) -> None:
        with torch.no_grad():
            torch.onnx.export(module, args, str(tmp), do_constant_folding=True, dynamo=False, **kwargs)

    return atomic_write(path, write)


def export_onnx_decoder(model: Sam, path: str | Path, *, return_single_mask: bool = True, opset: int = 17,
                        quantize: bool = False) -> Path:
    """Export the decoder of ``model`` to ``path`` (written atomically); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = DecoderForExport(model.cpu().eval(), return_single_mask).eval()
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
    if not quantize:
        return _atomic_onnx_export(wrapper, dummy, path, **kwargs)
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".tmp-") as tmp:
        float_path = _atomic_onnx_export(wrapper, dummy, Path(tmp) / "float.onnx", **kwargs)
        quantize_dynamic(float_path, Path(tmp) / "q.onnx", weight_type=QuantType.QUInt8)
        os.replace(Path(tmp) / "q.onnx", path)
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
