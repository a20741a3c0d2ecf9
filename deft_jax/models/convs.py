"""Convolutions written as matrix products, with nn.Conv's parameters and outputs.

The fold program (train/folds.py) vmaps a model over folds, each with its own parameters; a
vmapped nn.Conv then becomes a grouped convolution, which XLA's CPU backend runs slowly. Written
as (input patches) x (kernel matrix), the patches are a fixed gather that batches over folds and
the product becomes one batched matmul. The parameters keep nn.Conv's names and shapes
(kernel (k..., C, F), bias (F,)), so checkpoints and converted weights load into either.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def _init(init, axes):
  return nn.with_logical_partitioning(init, axes) if axes else init


class PatchConv(nn.Module):
  """nn.Conv with stride 1 and symmetric zero padding, on NHWC images."""
  features: int
  kernel: int
  padding: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  kernel_axes: tuple | None = None  # logical axes, for models the trainer shards

  @nn.compact
  def __call__(self, x):
    c, k = x.shape[-1], self.kernel
    kernel = self.param("kernel", _init(nn.initializers.lecun_normal(), self.kernel_axes),
                        (k, k, c, self.features), self.param_dtype)
    bias = self.param("bias", _init(nn.initializers.zeros, self.kernel_axes and self.kernel_axes[-1:]),
                      (self.features,), self.param_dtype)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    patches = jax.lax.conv_general_dilated_patches(
        x, (k, k), (1, 1), [(self.padding, self.padding)] * 2, dimension_numbers=("NHWC", "HWIO", "NHWC"))
    # Patch features are ordered (channel, row, column).
    matrix = kernel.transpose(2, 0, 1, 3).reshape(c * k * k, self.features)
    return patches @ matrix + bias


class PatchEmbed(nn.Module):
  """nn.Conv with kernel = stride = `patch` and VALID padding (ViT's patch embedding, 2-D or
  3-D tubelets): a reshape into patches, then one matmul."""
  features: int
  patch: Sequence[int]
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  use_bias: bool = True
  kernel_axes: tuple | None = None

  @nn.compact
  def __call__(self, x):
    patch, c = tuple(self.patch), x.shape[-1]
    kernel = self.param("kernel", _init(nn.initializers.lecun_normal(), self.kernel_axes),
                        patch + (c, self.features), self.param_dtype)
    bias = self.param("bias", _init(nn.initializers.zeros, self.kernel_axes and self.kernel_axes[-1:]),
                      (self.features,), self.param_dtype) if self.use_bias else None
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    lead, spatial = x.shape[:-1 - len(patch)], x.shape[-1 - len(patch):-1]
    grid = tuple(s // p for s, p in zip(spatial, patch))
    # VALID: a remainder that does not fill a patch is dropped, as nn.Conv does.
    x = x[(...,) + tuple(slice(0, g * p) for g, p in zip(grid, patch)) + (slice(None),)]
    split = x.reshape(lead + tuple(d for g, p in zip(grid, patch) for d in (g, p)) + (c,))
    n, d = len(lead), len(patch)
    order = tuple(range(n)) + tuple(n + 2 * i for i in range(d)) + tuple(n + 2 * i + 1 for i in range(d)) + (n + 2 * d,)
    out = split.transpose(order).reshape(lead + grid + (-1,)) @ kernel.reshape(-1, self.features)
    return out if bias is None else out + bias
