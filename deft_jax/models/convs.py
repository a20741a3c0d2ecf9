"""Convolutions written as matrix products, with nn.Conv's parameters and outputs.

The fold program (train/folds.py) vmaps a model over folds, each with its own parameters; a
vmapped nn.Conv then becomes a grouped convolution, which XLA's CPU backend runs slowly. Written
as (input patches) x (kernel matrix), the patches are a fixed gather that batches over folds and
the product becomes one batched matmul. The parameters keep nn.Conv's names and shapes
(kernel (k..., C, F), bias (F,)), so checkpoints and converted weights load into either.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np


def _init(init, axes):
  return nn.with_logical_partitioning(init, axes) if axes else init


def image_patches(x, kernel: int, padding: int):
  """(N, H', W', C k k): every k x k window of the zero-padded NHWC input, its features ordered
  (channel, row, column) as jax.lax.conv_general_dilated_patches orders them. Written as k^2
  slices: XLA's CPU backend runs the library's form (a convolution with an identity kernel)
  at half the speed."""
  x = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  h, w = x.shape[1] - kernel + 1, x.shape[2] - kernel + 1
  windows = [x[:, dy:dy + h, dx:dx + w] for dy in range(kernel) for dx in range(kernel)]
  return jnp.stack(windows, -1).reshape(x.shape[0], h, w, -1)


def max_pool(x, size: int, padding: int = 0):
  """nn.max_pool(x, (size, size), (size, size), padding=((padding, padding),) * 2) on NHWC, as a
  reshape and a max, whose gradient XLA's CPU backend runs faster than reduce_window's
  select-and-scatter."""
  n = [(s + 2 * padding - size) // size + 1 for s in x.shape[1:3]]
  if padding:
    x = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)), constant_values=-jnp.inf)
  x = x[:, :size * n[0], :size * n[1]]
  return x.reshape(x.shape[0], n[0], size, n[1], size, x.shape[-1]).max((2, 4))


def _conv_params(module: nn.Module, features: int, kernel: int, in_features: int, param_dtype, kernel_axes):
  """nn.Conv's parameters, kernel (k, k, C, F) and bias (F,), created in `module`."""
  weights = module.param("kernel", _init(nn.initializers.lecun_normal(), kernel_axes),
                         (kernel, kernel, in_features, features), param_dtype)
  bias = module.param("bias", _init(nn.initializers.zeros, kernel_axes and kernel_axes[-1:]), (features,), param_dtype)
  return weights, bias


def _convolve(x, params, kernel: int, padding: int, dtype):
  """x convolved with every (kernel, bias) of `params` (one kernel size), their outputs side by side."""
  c = x.shape[-1]
  x, *flat = nn.dtypes.promote_dtype(x, *(p for pair in params for p in pair), dtype=dtype)
  # Patch features are ordered (channel, row, column).
  matrix = jnp.concatenate([k.transpose(2, 0, 1, 3).reshape(c * kernel * kernel, -1) for k in flat[::2]], -1)
  return image_patches(x, kernel, padding) @ matrix + jnp.concatenate(flat[1::2])


class ConvParams(nn.Module):
  """nn.Conv's parameters alone, for `patch_convs`."""
  features: int
  kernel: int
  in_features: int
  param_dtype: Any = jnp.float32
  kernel_axes: tuple | None = None

  @nn.compact
  def __call__(self):
    return _conv_params(self, self.features, self.kernel, self.in_features, self.param_dtype, self.kernel_axes)


def patch_convs(x, features: Sequence[int], kernel: int, padding: int, names: Sequence[str],
                dtype: Any = jnp.float32, param_dtype: Any = jnp.float32, kernel_axes: tuple | None = None):
  """Several stride-1 convolutions of one NHWC input with one kernel size (STSTNet's streams),
  their parameters nn.Conv's under `names` in the calling module. The input's patches are
  gathered once and multiplied by the kernels side by side; on small-channel maps the gather,
  not the product, is what costs."""
  params = [ConvParams(f, kernel, x.shape[-1], param_dtype, kernel_axes, name=n)() for f, n in zip(features, names)]
  return jnp.split(_convolve(x, params, kernel, padding, dtype), np.cumsum(features)[:-1], axis=-1)


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
    params = _conv_params(self, self.features, self.kernel, x.shape[-1], self.param_dtype, self.kernel_axes)
    return _convolve(x, [params], self.kernel, self.padding, self.dtype)


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
