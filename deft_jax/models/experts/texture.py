"""Dynamic-texture expert: how appearance changes over the clip (ViViT-style tubelets,
Arnab et al. 2021)."""

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from deft_jax.models.experts import encoder as encoder_lib


@dataclasses.dataclass(frozen=True)
class TextureConfig:
  encoder: encoder_lib.EncoderConfig = encoder_lib.EncoderConfig()
  num_frames: int = 8
  image_size: int = 64
  tubelet: tuple[int, int, int] = (2, 16, 16)


class TextureExpert(nn.Module):
  """Joint space-time attention over tubelets; tokens are averaged over time at the end."""
  config: TextureConfig
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, clip, deterministic=True):
    """clip (B, T, S, S, 3) in [-1, 1] -> tokens (B, N, width), one per spatial tubelet."""
    c = self.config
    x = encoder_lib.patch_embed(clip, c.encoder.width, c.tubelet, self.dtype, self.param_dtype, "tubelet_embed")
    b, t, h, w, d = x.shape
    x = x + encoder_lib.position_embedding(self, "space_embedding", (1, 1, h, w, d))
    x = x + encoder_lib.position_embedding(self, "time_embedding", (1, t, 1, 1, d))
    x = encoder_lib.Encoder(c.encoder, self.dtype, self.param_dtype, name="encoder")(
        x.reshape(b, t * h * w, d).astype(self.dtype), deterministic)
    return x.reshape(b, t, h * w, d).mean(axis=1)
