"""SAM prompt encoder: points, boxes and a low-res mask → sparse tokens and a dense embedding.

Random-Fourier-feature positional encoding (a fixed 2×(C/2) Gaussian matrix stored in the checkpoint),
four learned point/corner embeddings, a padding ("not a point") embedding and a small conv stack that
downscales a 256×256 mask logit map to the 64×64 embedding grid.

Maskloop's own archs (``lite_clicks``) add ``PromptMaps``: the clicks and the box are also drawn as
three 256×256 maps (positive clicks, negative clicks, box interior), as interactive-segmentation
models of the RITM family do, and a conv stack like the mask downscaling adds them to the dense
embedding. The prompt then reaches every pixel of the embedding grid where it lies, instead of only
through attention over positional encodings, which a small model trained on a few hundred images on
a CPU does not learn well. Official archs do not have it, so their checkpoints load unchanged.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from workers.sam.modeling.common import LayerNorm2d


class PositionEmbeddingRandom(nn.Module):
    """Positional encoding of normalised (x, y) coordinates with random Fourier features."""

    def __init__(self, num_pos_feats: int = 128, scale: float | None = None) -> None:
        super().__init__()
        if scale is None or scale <= 0.0:
            scale = 1.0
        self.register_buffer("positional_encoding_gaussian_matrix", scale * torch.randn((2, num_pos_feats)))

    def _pe_encoding(self, coords: torch.Tensor) -> torch.Tensor:
        """coords: …×2 in [0, 1] (x, y) → …×(2·num_pos_feats) as [sin | cos]."""
        projected = (2.0 * coords - 1.0) @ self.positional_encoding_gaussian_matrix.to(coords.dtype)
        projected = 2.0 * math.pi * projected
        return torch.cat([torch.sin(projected), torch.cos(projected)], dim=-1)

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """Dense encoding of an h×w grid at cell centres → C×h×w."""
        h, w = size
        matrix = self.positional_encoding_gaussian_matrix
        ys = (torch.arange(h, device=matrix.device, dtype=matrix.dtype) + 0.5) / h
        xs = (torch.arange(w, device=matrix.device, dtype=matrix.dtype) + 0.5) / w
        grid = torch.stack([xs[None, :].expand(h, w), ys[:, None].expand(h, w)], dim=-1)
        return self._pe_encoding(grid).permute(2, 0, 1)

    def forward_with_coords(self, coords_input: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """coords_input: B×N×2 pixel coordinates (x, y) in an image of ``image_size`` = (H, W) → B×N×C."""
        coords = coords_input.clone().float()
        coords[..., 0] = coords[..., 0] / image_size[1]
        coords[..., 1] = coords[..., 1] / image_size[0]
        return self._pe_encoding(coords)


def render_prompt_maps(coords: torch.Tensor, labels: torch.Tensor, size: int, frame: int,
                       sigma: float) -> torch.Tensor:
    """Draw prompts as maps: B×N×2 (x, y) ``frame``-pixel coordinates, B×N labels → B×3×size×size.

    Channel 0: max over positive clicks (label 1) of a Gaussian of ``sigma`` frame pixels; channel 1:
    the same for negative clicks (label 0); channel 2: 1 inside the box whose corners are the points
    labelled 2 (top-left) and 3 (bottom-right), with soft edges, 0 everywhere when there is no box.
    Padding points (label -1) draw nothing. Written with export-friendly ops (no data-dependent branch).
    """
    step = frame / size
    centres = (torch.arange(size, device=coords.device, dtype=coords.dtype) + 0.5) * step
    dx = centres.view(1, 1, 1, size) - coords[..., 0].unsqueeze(-1).unsqueeze(-1)
    dy = centres.view(1, 1, size, 1) - coords[..., 1].unsqueeze(-1).unsqueeze(-1)
    blobs = torch.exp(-(dx * dx + dy * dy) / (2.0 * sigma * sigma))  # B×N×S×S
    lab = labels.unsqueeze(-1).unsqueeze(-1)
    pos = (blobs * (lab == 1).to(blobs.dtype)).amax(dim=1)
    neg = (blobs * (lab == 0).to(blobs.dtype)).amax(dim=1)
    is_tl = (labels == 2).to(coords.dtype).unsqueeze(-1)  # B×N×1
    is_br = (labels == 3).to(coords.dtype).unsqueeze(-1)
    has_box = is_tl.amax(dim=1) * is_br.amax(dim=1)  # B×1
    tl = (coords * is_tl).sum(dim=1) / is_tl.sum(dim=1).clamp(min=1.0)  # B×2
    br = (coords * is_br).sum(dim=1) / is_br.sum(dim=1).clamp(min=1.0)
    soft = step / 2.0
    inside_x = torch.sigmoid((centres[None] - tl[:, 0:1]) / soft) * torch.sigmoid((br[:, 0:1] - centres[None]) / soft)
    inside_y = torch.sigmoid((centres[None] - tl[:, 1:2]) / soft) * torch.sigmoid((br[:, 1:2] - centres[None]) / soft)
    box = inside_y.unsqueeze(2) * inside_x.unsqueeze(1) * has_box.unsqueeze(-1)
    return torch.stack([pos, neg, box], dim=1)


class PromptMaps(nn.Module):
    """Clicks and box drawn as 3×256×256 maps → B×C×64×64, added to the dense prompt embedding.

    The last convolution starts at zero, so adding this module to a trained model changes nothing
    until it is trained.
    """

    def __init__(self, embed_dim: int, map_size: int, frame: int, sigma: float = 16.0, hidden: int = 32,
                 activation: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.map_size = map_size
        self.frame = frame
        self.sigma = sigma
        self.net = nn.Sequential(
            nn.Conv2d(3, hidden, kernel_size=2, stride=2),
            LayerNorm2d(hidden),
            activation(),
            nn.Conv2d(hidden, 2 * hidden, kernel_size=2, stride=2),
            LayerNorm2d(2 * hidden),
            activation(),
            nn.Conv2d(2 * hidden, embed_dim, kernel_size=1),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """coords B×N×2 (frame pixels, N ≥ 1; pixel centres at +0.5 as for the point tokens), labels B×N
        → B×C×(map_size/4)×(map_size/4)."""
        return self.net(self.render(coords, labels))

    def render(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The B×3×map_size×map_size maps that ``net`` reads (see ``render_prompt_maps``)."""
        return render_prompt_maps(coords.float() + 0.5, labels, self.map_size, self.frame, self.sigma)


class PromptEncoder(nn.Module):
    """Encodes prompts for the mask decoder (keys and semantics of the official ``PromptEncoder``)."""

    def __init__(self, embed_dim: int = 256, image_embedding_size: tuple[int, int] = (64, 64),
                 input_image_size: tuple[int, int] = (1024, 1024), mask_in_chans: int = 16,
                 activation: type[nn.Module] = nn.GELU, prompt_maps: bool = False) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.input_image_size = input_image_size
        self.image_embedding_size = image_embedding_size
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        # 0 negative point, 1 positive point, 2 box top-left, 3 box bottom-right
        self.num_point_embeddings = 4
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            activation(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            activation(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)
        # Maskloop's own archs only (official checkpoints have no such keys)
        self.prompt_maps = (PromptMaps(embed_dim, self.mask_input_size[0], input_image_size[0], activation=activation)
                            if prompt_maps else None)

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the embedding grid: 1×C×64×64."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def _embed_points(self, points: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        """points B×N×2 (1024-frame pixels), labels B×N → B×(N+pad)×C."""
        points = points + 0.5
        if pad:
            points = torch.cat([points, torch.zeros((points.shape[0], 1, 2), device=points.device)], dim=1)
            labels = torch.cat([labels, -torch.ones((labels.shape[0], 1), device=labels.device,
                                                    dtype=labels.dtype)], dim=1)
        emb = self.pe_layer.forward_with_coords(points, self.input_image_size)
        labels = labels[..., None]
        emb = torch.where(labels == -1, torch.zeros_like(emb), emb)
        emb = emb + (labels == -1) * self.not_a_point_embed.weight
        emb = emb + (labels == 0) * self.point_embeddings[0].weight
        emb = emb + (labels == 1) * self.point_embeddings[1].weight
        return emb

    def _embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """boxes B×4 XYXY (1024-frame pixels) → B×2×C."""
        corners = (boxes + 0.5).reshape(-1, 2, 2)
        emb = self.pe_layer.forward_with_coords(corners, self.input_image_size)
        emb[:, 0, :] = emb[:, 0, :] + self.point_embeddings[2].weight
        emb[:, 1, :] = emb[:, 1, :] + self.point_embeddings[3].weight
        return emb

    def _embed_masks(self, masks: torch.Tensor) -> torch.Tensor:
        """masks B×1×256×256 logits → B×C×64×64."""
        return self.mask_downscaling(masks)

    def _get_batch_size(self, points: tuple[torch.Tensor, torch.Tensor] | None, boxes: torch.Tensor | None,
                        masks: torch.Tensor | None) -> int:
        if points is not None:
            return points[0].shape[0]
        if boxes is not None:
            return boxes.shape[0]
        if masks is not None:
            return masks.shape[0]
        return 1

    def _get_device(self) -> torch.device:
        return self.point_embeddings[0].weight.device

    def forward(self, points: tuple[torch.Tensor, torch.Tensor] | None, boxes: torch.Tensor | None,
                masks: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed prompts.

        points: (coords B×N×2, labels B×N) or None; boxes: B×4 or None; masks: B×1×256×256 or None.
        Returns sparse B×T×C (points incl. padding, then box corners) and dense B×C×64×64.
        """
        bs = self._get_batch_size(points, boxes, masks)
        sparse = torch.empty((bs, 0, self.embed_dim), device=self._get_device())
        if points is not None:
            coords, labels = points
            sparse = torch.cat([sparse, self._embed_points(coords, labels, pad=boxes is None)], dim=1)
        if boxes is not None:
            sparse = torch.cat([sparse, self._embed_boxes(boxes)], dim=1)
        if masks is not None:
            dense = self._embed_masks(masks)
        else:
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(
                bs, -1, self.image_embedding_size[0], self.image_embedding_size[1])
        if self.prompt_maps is not None and (points is not None or boxes is not None):
            dense = dense + self.prompt_maps(*self._map_inputs(points, boxes))
        return sparse, dense

    def _map_inputs(self, points: tuple[torch.Tensor, torch.Tensor] | None, boxes: torch.Tensor | None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Points and box corners as one (coords B×N×2, labels B×N) with the box corners labelled 2 and 3."""
        coords, labels = [], []
        if points is not None:
            coords.append(points[0].float())
            labels.append(points[1])
        if boxes is not None:
            coords.append(boxes.reshape(-1, 2, 2).float())
            labels.append(torch.tensor([2, 3], device=boxes.device).expand(boxes.shape[0], 2))
        return torch.cat(coords, dim=1), torch.cat([lab.to(labels[0].dtype) for lab in labels], dim=1)
