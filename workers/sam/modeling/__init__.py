"""Segment Anything network modules (encoders, prompt encoder, two-way transformer, mask decoder, Sam)."""
from workers.sam.modeling.common import LayerNorm2d, MLPBlock
from workers.sam.modeling.image_encoder import ImageEncoderViT
from workers.sam.modeling.lite_encoder import LiteImageEncoder
from workers.sam.modeling.mask_decoder import MaskDecoder
from workers.sam.modeling.prompt_encoder import PromptEncoder
from workers.sam.modeling.sam import Sam
from workers.sam.modeling.tiny_vit import TinyViT
from workers.sam.modeling.transformer import TwoWayTransformer

__all__ = ["ImageEncoderViT", "LayerNorm2d", "LiteImageEncoder", "MLPBlock", "MaskDecoder", "PromptEncoder", "Sam",
           "TinyViT", "TwoWayTransformer"]
