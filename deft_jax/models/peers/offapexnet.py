"""Off-ApexNet (Gan, Liong, Yau, Huang, Tan, Signal Processing: Image Communication 2019).

Two streams, one for the horizontal (u) and one for the vertical (v) onset->apex flow at
28 x 28: each is conv 5 x 5 (6 filters) -> max-pool 2 -> conv 5 x 5 (16 filters) -> max-pool 2.
The flattened streams are concatenated into a 1,024-unit dense layer (dropout) and a dense
output to the classes. Strain is not used. Written from the paper's description; its exact
dense widths are our reading of it. The convolutions are written as patches x matrix
(models/convs.py), for the fold program.
"""

import flax.linen as nn
import jax.numpy as jnp

from deft_jax.models import convs


class OffApexNet(nn.Module):
  num_classes: int = 3
  hidden: int = 1024
  dropout: float = 0.5

  @nn.compact
  def __call__(self, flow, train: bool = False):
    """flow (B, 28, 28, 3) (u, v, strain; strain unused) -> logits (B, num_classes)."""
    streams = []
    for i in range(2):
      x = flow[..., i:i + 1]
      x = convs.max_pool(nn.relu(convs.PatchConv(6, 5, 2, name=f"s{i}_conv1")(x)), 2)  # 5 x 5, "SAME"
      x = convs.max_pool(nn.relu(convs.PatchConv(16, 5, 2, name=f"s{i}_conv2")(x)), 2)
      streams.append(x.reshape(x.shape[0], -1))
    x = nn.relu(nn.Dense(self.hidden, name="fc1")(jnp.concatenate(streams, -1)))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_classes, name="fc2")(x)
