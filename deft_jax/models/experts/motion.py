"""Motion-semantics expert: onset->apex flow (u, v, strain) -> one token per face region.

Tokens line up with the regions named in the answers' cues, and an AU head reads them, so the
expert's vocabulary is the one the LLM is taught to speak.
"""

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from deft_jax.facs import catalogue, regions
from deft_jax.models.experts import encoder as encoder_lib


@dataclasses.dataclass(frozen=True)
class MotionConfig:
  encoder: encoder_lib.EncoderConfig = encoder_lib.EncoderConfig()
  flow_size: int = 64
  patch: int = 8
  flow_scale: float = 1.0  # px that count as one unit of input


def region_weights(grid: int) -> np.ndarray:
  """(R, grid*grid) weights averaging patch tokens inside each canonical face region."""
  masks = regions.region_masks(grid).reshape(len(catalogue.REGIONS), -1).astype(np.float32)
  return masks / np.maximum(masks.sum(-1, keepdims=True), 1.0)


class MotionExpert(nn.Module):
  config: MotionConfig
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, flow, deterministic=True):
    """flow (B, S, S, 3) -> (region tokens (B, R, width), AU logits (B, NUM_AUS))."""
    c = self.config
    x = encoder_lib.patch_embed(flow / c.flow_scale, c.encoder.width, (c.patch, c.patch), self.dtype,
                            self.param_dtype, "patch_embed")
    b, h, w, d = x.shape
    x = x + encoder_lib.position_embedding(self, "position_embedding", (1, h, w, d))
    x = encoder_lib.Encoder(c.encoder, self.dtype, self.param_dtype, name="encoder")(
        x.reshape(b, h * w, d).astype(self.dtype), deterministic)
    tokens = jnp.einsum("rn,bnd->brd", jnp.asarray(region_weights(h), self.dtype), x)
    # Each AU belongs to a region, so the head sees every region's token in its place.
    au_logits = encoder_lib.dense(catalogue.NUM_AUS, (None, None), self.dtype, self.param_dtype, "au_head")(
        tokens.reshape(b, -1))
    return tokens, au_logits.astype(jnp.float32)
