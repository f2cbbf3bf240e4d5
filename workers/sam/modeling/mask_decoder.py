"""SAM mask decoder: IoU + mask tokens and prompt tokens run through the two-way transformer; the mask
tokens become hypernetwork weights applied to 4× upscaled image features (256×256 mask logits)."""
from __future__ import annotations

import torch
from torch import nn

from workers.sam.modeling.common import MLP, LayerNorm2d
from workers.sam.modeling.transformer import TwoWayTransformer


class MaskDecoder(nn.Module):
    """Predicts 1 + ``num_multimask_outputs`` masks and their IoU scores (official keys and semantics)."""

    def __init__(self, *, transformer_dim: int = 256, transformer: nn.Module | None = None,
                 num_multimask_outputs: int = 3, activation: type[nn.Module] = nn.GELU,
                 iou_head_depth: int = 3, iou_head_hidden_dim: int = 256) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer if transformer is not None else TwoWayTransformer(
            depth=2, embedding_dim=transformer_dim, mlp_dim=2048, num_heads=8)
        self.num_multimask_outputs = num_multimask_outputs
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            activation(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            activation(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3) for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = MLP(transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth)

    def forward(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                sparse_prompt_embeddings: torch.Tensor, dense_prompt_embeddings: torch.Tensor,
                multimask_output: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode masks.

        image_embeddings: 1×C×64×64 (or B×C×64×64, one per prompt); image_pe: 1×C×64×64;
        sparse_prompt_embeddings: B×T×C; dense_prompt_embeddings: B×C×64×64.
        Returns mask logits B×K×256×256 and IoU predictions B×K (K = 3 if multimask_output else 1).
        """
        masks, iou_pred = self.predict_masks(image_embeddings, image_pe, sparse_prompt_embeddings,
                                             dense_prompt_embeddings)
        sl = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, sl], iou_pred[:, sl]

    def predict_masks(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                      sparse_prompt_embeddings: torch.Tensor,
                      dense_prompt_embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """All 4 masks B×4×256×256 and IoU predictions B×4."""
        b = sparse_prompt_embeddings.shape[0]
        tokens = self.prompt_tokens(sparse_prompt_embeddings)

        if image_embeddings.shape[0] == b:
            src = image_embeddings
        elif image_embeddings.shape[0] == 1:
            src = image_embeddings.expand(b, -1, -1, -1)
        else:
            raise ValueError(f"image_embeddings batch {image_embeddings.shape[0]} does not match {b} prompts")
        src = src + dense_prompt_embeddings
        pos_src = image_pe.expand(b, -1, -1, -1) if image_pe.shape[0] == 1 else image_pe
        _, c, h, w = src.shape

        hs, src = self.transformer(src, pos_src, tokens)
        hyper_in, iou_pred = self.heads(hs)

        src = src.transpose(1, 2).reshape(b, c, h, w)
        upscaled = self.output_upscaling(src)
        bu, cu, hu, wu = upscaled.shape
        masks = (hyper_in @ upscaled.reshape(bu, cu, hu * wu)).reshape(bu, -1, hu, wu)
        return masks, iou_pred

    def prompt_tokens(self, sparse_prompt_embeddings: torch.Tensor) -> torch.Tensor:
        """The IoU and mask output tokens followed by the prompt tokens: B×(1 + 4 + T)×C."""
        b = sparse_prompt_embeddings.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        output_tokens = output_tokens.unsqueeze(0).expand(b, -1, -1).to(sparse_prompt_embeddings.dtype)
        return torch.cat([output_tokens, sparse_prompt_embeddings], dim=1)

    def heads(self, hs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Transformer token outputs B×T×C → hypernetwork weights B×4×(C/8) and IoU predictions B×4."""
        mask_tokens_out = hs[:, 1:1 + self.num_mask_tokens, :]
        hyper_in = torch.stack([mlp(mask_tokens_out[:, i, :])
                                for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1)
        return hyper_in, self.iou_prediction_head(hs[:, 0, :])
