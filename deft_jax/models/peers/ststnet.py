"""STSTNet: Shallow Triple Stream Three-dimensional CNN (Liong, See, Wong, Phan, MEGC2019).

Input: the 28 x 28 onset->apex u, v and optical strain stacked as three channels. Three
parallel streams of one convolution each (3, 5 and 8 filters) with ReLU and batch norm, each
max-pooled (3 x 3, stride 3); the streams are concatenated (16 channels), average-pooled
(2 x 2, stride 2) and flattened into one dense layer to the 3 classes. The paper's streams all
use 3 x 3 kernels with padding 2 (28 -> 30 -> 10 -> 5), about 1,700 parameters; `kernels`
lets the 3/5/7 variant be tried.

The convolutions are written as patches x matrix (`PatchConv`, the same parameters and outputs
as nn.Conv): vmapped over folds, a convolution whose kernel differs per fold becomes a grouped
convolution, which XLA's CPU backend runs slowly; patches (a fixed filter) batch over folds,
and the per-fold matrix product becomes one batched matmul.
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class PatchConv(nn.Module):
  """nn.Conv (stride 1, symmetric padding) as image patches times the kernel matrix."""
  features: int
  kernel: int
  padding: int

  @nn.compact
  def __call__(self, x):
    c, k = x.shape[-1], self.kernel
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (k, k, c, self.features))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    patches = jax.lax.conv_general_dilated_patches(
        x, (k, k), (1, 1), [(self.padding, self.padding)] * 2, dimension_numbers=("NHWC", "HWIO", "NHWC"))
    # Patch features are ordered (channel, row, column).
    matrix = kernel.transpose(2, 0, 1, 3).reshape(c * k * k, self.features)
    return patches @ matrix + bias


class STSTNet(nn.Module):
  num_classes: int = 3
  filters: Sequence[int] = (3, 5, 8)
  kernels: Sequence[int] = (3, 3, 3)
  dropout: float = 0.5

  @nn.compact
  def __call__(self, flow, train: bool = False):
    """flow (B, 28, 28, 3) -> logits (B, num_classes)."""
    streams = []
    for i, (f, k) in enumerate(zip(self.filters, self.kernels)):
      pad = k // 2 + 1  # k = 3: padding 2, as the paper's 28 -> 30
      x = PatchConv(f, k, pad, name=f"conv{i}")(flow)
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, name=f"bn{i}")(nn.relu(x))
      x = nn.max_pool(x, (3, 3), (3, 3), padding=((1, 1), (1, 1)))
      streams.append(x)
    x = nn.avg_pool(jnp.concatenate(streams, -1), (2, 2), (2, 2))
    x = nn.Dropout(self.dropout, deterministic=not train)(x.reshape(x.shape[0], -1))
    return nn.Dense(self.num_classes, name="fc")(x)
