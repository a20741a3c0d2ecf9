"""Structure expert: static appearance and facial geometry, from the onset and apex frames.

A ViT (vit.VisionTransformer, loadable from a local SigLIP or CLIP vision checkpoint, see
vision_hf.py) embeds each keyframe as it was trained to; a frame embedding then tells onset
from apex and the encoder attends over both frames' tokens jointly, so geometry changes
between the two are visible to it.
"""

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from flax import traverse_util

from deft_jax.models.experts import encoder as encoder_lib
from deft_jax.models.experts import registry, vision_hf
from deft_jax.models.experts import vit as vit_lib


@dataclasses.dataclass(frozen=True)
class StructureConfig:
  vit: vit_lib.ViTConfig = vit_lib.ViTConfig()
  checkpoint: str = ""  # a local HF vision checkpoint that vit's shapes come from; "" = random init

  @property
  def image_size(self) -> int:
    return self.vit.image_size


def config_from(node) -> StructureConfig:
  """From config.model.structure: the checkpoint's architecture, or the inline one."""
  if node.checkpoint:
    return StructureConfig(vision_hf.vit_config(node.checkpoint, node.image_size), node.checkpoint)
  return StructureConfig(vit_lib.ViTConfig(encoder_lib.EncoderConfig(**node.encoder.to_dict()), node.image_size, node.patch))


class StructureExpert(nn.Module):
  config: StructureConfig
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, keyframes, deterministic=True):
    """keyframes (B, F, S', S', 3) uint8, any S' -> (tokens (B, F N, width), {})."""
    c = self.config.vit
    keyframes = registry.resize(registry.unit_pixels(keyframes), c.image_size)
    tower = vit_lib.VisionTransformer(c, self.dtype, self.param_dtype, name="vit")
    b, f = keyframes.shape[:2]
    x = tower.embed(vit_lib.normalise(keyframes, c).reshape((b * f,) + keyframes.shape[2:]))
    x = x.reshape(b, f, -1, c.encoder.width)
    x = x + encoder_lib.position_embedding(self, "frame_embedding", (1, f, 1, c.encoder.width))
    return tower.encode(x.reshape(b, -1, c.encoder.width).astype(self.dtype), deterministic), {}


def _pretrained(config: StructureConfig) -> dict:
  if not config.checkpoint:
    return {}
  _, params = vision_hf.load(config.checkpoint, config.image_size)
  return {("vit",) + k: v for k, v in traverse_util.flatten_dict(params).items()}


EXPERT = registry.Expert(
    reads="keyframes", config_from=config_from, module=StructureExpert, pretrained=_pretrained,
    input_shape=lambda c: (2, c.image_size, c.image_size, 3))
