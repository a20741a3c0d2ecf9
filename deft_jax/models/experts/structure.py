"""Structure expert: static appearance and facial geometry, from the onset and apex frames."""

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from deft_jax.models.experts import encoder as encoder_lib


@dataclasses.dataclass(frozen=True)
class StructureConfig:
  encoder: encoder_lib.EncoderConfig = encoder_lib.EncoderConfig()
  image_size: int = 64
  patch: int = 16


class StructureExpert(nn.Module):
  """A ViT over both keyframes jointly; a frame embedding tells onset from apex."""
  config: StructureConfig
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, keyframes, deterministic=True):
    """keyframes (B, 2, S, S, 3) in [-1, 1] -> tokens (B, 2 N, width)."""
    c = self.config
    b, f = keyframes.shape[:2]
    x = encoder_lib.patch_embed(keyframes.reshape((b * f,) + keyframes.shape[2:]), c.encoder.width,
                            (c.patch, c.patch), self.dtype, self.param_dtype, "patch_embed")
    x = x.reshape(b, f, -1, c.encoder.width)
    x = x + encoder_lib.position_embedding(self, "position_embedding", (1, 1) + x.shape[2:])
    x = x + encoder_lib.position_embedding(self, "frame_embedding", (1, f, 1, c.encoder.width))
    x = x.reshape(b, -1, c.encoder.width).astype(self.dtype)
    return encoder_lib.Encoder(c.encoder, self.dtype, self.param_dtype, name="encoder")(x, deterministic)
