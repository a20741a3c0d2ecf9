"""STSTNet: Shallow Triple Stream Three-dimensional CNN (Liong, See, Wong, Phan, MEGC2019).

Input: the 28 x 28 onset->apex u, v and optical strain stacked as three channels. Three
parallel streams of one convolution each (3, 5 and 8 filters) with ReLU and batch norm, each
max-pooled (3 x 3, stride 3); the streams are concatenated (16 channels), average-pooled
(2 x 2, stride 2) and flattened into one dense layer to the 3 classes. The paper's streams all
use 3 x 3 kernels with padding 2 (28 -> 30 -> 10 -> 5), about 1,700 parameters; `kernels`
lets the 3/5/7 variant be tried.

The convolutions are written as patches x matrix (models/convs.py), for the fold program.
"""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from deft_jax.models import convs


class STSTNet(nn.Module):
  num_classes: int = 3
  filters: Sequence[int] = (3, 5, 8)
  kernels: Sequence[int] = (3, 3, 3)
  dropout: float = 0.5

  @nn.compact
  def __call__(self, flow, train: bool = False):
    """flow (B, 28, 28, 3) -> logits (B, num_classes)."""
    convolved = {}
    for k in sorted(set(self.kernels)):  # streams of one kernel size share the input's patches
      which = [i for i, size in enumerate(self.kernels) if size == k]
      outs = convs.patch_convs(flow, [self.filters[i] for i in which], k, k // 2 + 1,  # k = 3: padding 2 (28 -> 30)
                               [f"conv{i}" for i in which])
      convolved.update(zip(which, outs))
    streams = []
    for i in range(len(self.filters)):
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, name=f"bn{i}")(nn.relu(convolved[i]))
      streams.append(convs.max_pool(x, 3, padding=1))
    x = nn.avg_pool(jnp.concatenate(streams, -1), (2, 2), (2, 2))
    x = nn.Dropout(self.dropout, deterministic=not train)(x.reshape(x.shape[0], -1))
    return nn.Dense(self.num_classes, name="fc")(x)
