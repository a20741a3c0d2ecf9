"""A pre-norm transformer encoder shared by the experts (ViT, Dosovitskiy et al. 2021).

Names follow Hugging Face's SigLIP/CLIP vision towers (layer_norm1, self_attn.{q,k,v,out}_proj,
layer_norm2, mlp.fc1/fc2) so pretrained vision weights map on by renaming.
"""

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from deft_jax.models import convs


ACTIVATIONS = {
    "gelu_tanh": lambda x: nn.gelu(x, approximate=True),  # SigLIP's gelu_pytorch_tanh
    "gelu": lambda x: nn.gelu(x, approximate=False),
    "quick_gelu": lambda x: x * nn.sigmoid(1.702 * x),  # CLIP
}


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
  width: int = 64
  depth: int = 2
  heads: int = 4
  mlp: int = 128
  dropout: float = 0.0
  layer_norm_eps: float = 1e-6
  activation: str = "gelu_tanh"  # a key of ACTIVATIONS

  def __post_init__(self):
    if self.activation not in ACTIVATIONS:
      raise ValueError(f"encoder activation {self.activation!r}; use one of {sorted(ACTIVATIONS)}")
    if self.width % self.heads:
      raise ValueError(f"encoder width {self.width} does not split into {self.heads} heads")


def dense(features, axes, dtype, param_dtype, name):
  return nn.Dense(features, dtype=dtype, param_dtype=param_dtype, name=name,
                  kernel_init=nn.with_logical_partitioning(nn.initializers.xavier_uniform(), axes),
                  bias_init=nn.with_logical_partitioning(nn.initializers.zeros, axes[-1:]))


def layer_norm(eps, dtype, param_dtype, name):
  return nn.LayerNorm(eps, dtype=dtype, param_dtype=param_dtype, name=name,
                      scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("norm",)),
                      bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("norm",)))


class SelfAttention(nn.Module):
  """Multi-head self-attention; `zero_out` starts the output projection at 0 (a residual
  branch that is the identity at init, as ViViT initialises its temporal attention)."""
  config: EncoderConfig
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  zero_out: bool = False

  @nn.compact
  def __call__(self, x, mask=None):
    c = self.config
    b, n, _ = x.shape
    hd = c.width // c.heads
    proj = lambda name: dense(c.width, ("embed", "heads"), self.dtype, self.param_dtype, name)(x).reshape(b, n, c.heads, hd)
    q, k, v = proj("q_proj"), proj("k_proj"), proj("v_proj")
    # mask: broadcastable to (B, heads, N, N); cuDNN flash attention where the backend has it.
    out = jax.nn.dot_product_attention(q, k, v, mask=mask).reshape(b, n, c.width)
    init = nn.initializers.zeros if self.zero_out else nn.initializers.xavier_uniform()
    return nn.Dense(c.width, dtype=self.dtype, param_dtype=self.param_dtype, name="out_proj",
                    kernel_init=nn.with_logical_partitioning(init, ("heads", "embed")),
                    bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)))(out)


class EncoderLayer(nn.Module):
  config: EncoderConfig
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, deterministic=True):
    c, dt, pdt = self.config, self.dtype, self.param_dtype
    y = SelfAttention(c, dt, pdt, name="self_attn")(layer_norm(c.layer_norm_eps, dt, pdt, "layer_norm1")(x))
    x = x + nn.Dropout(c.dropout)(y, deterministic)
    y = layer_norm(c.layer_norm_eps, dt, pdt, "layer_norm2")(x)
    y = dense(c.mlp, ("embed", "mlp"), dt, pdt, "fc1")(y)
    y = dense(c.width, ("mlp", "embed"), dt, pdt, "fc2")(ACTIVATIONS[c.activation](y))
    return x + nn.Dropout(c.dropout)(y, deterministic)


class Encoder(nn.Module):
  """depth x `layer`, then a final LayerNorm unless `final_norm` is off (CLIP's
  last_hidden_state has none: its post_layernorm is applied to the pooled token only)."""
  config: EncoderConfig
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  final_norm: bool = True
  layer: Any = None  # the layer class; None: EncoderLayer (texture passes its factorised one)

  @nn.compact
  def __call__(self, x, deterministic=True):
    for i in range(self.config.depth):
      x = (self.layer or EncoderLayer)(self.config, self.dtype, self.param_dtype, name=f"layers_{i}")(x, deterministic)
    if not self.final_norm:
      return x
    return layer_norm(self.config.layer_norm_eps, self.dtype, self.param_dtype, "post_layernorm")(x)


def patch_conv(width, patch, dtype, param_dtype, name, use_bias=True) -> nn.Module:
  """Non-overlapping patches (2-D, or 3-D tubelets when `patch` has three sizes) -> tokens; as a
  matmul (models/convs.py) so that fold-vmapped experts stay fast."""
  return convs.PatchEmbed(width, tuple(patch), dtype, param_dtype, use_bias, name=name,
                          kernel_axes=(None,) * (len(patch) + 1) + ("embed",))


def patch_embed(x, width, patch, dtype, param_dtype, name):
  return patch_conv(width, patch, dtype, param_dtype, name)(x)


def position_embedding(module: nn.Module, name: str, shape):
  return module.param(name, nn.with_logical_partitioning(nn.initializers.normal(0.02), (None,) * (len(shape) - 1) + ("embed",)),
                      shape, module.param_dtype)
