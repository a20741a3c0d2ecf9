"""A domain adversary: a head that names each clip's subject (or corpus) from the feature the
emotion head reads, through a gradient reversal, so that the rest of the model learns features
from which the subject cannot be told (domain-adversarial training, Ganin & Lempitsky, ICML 2015).

Cross-subject MER fails on identity: a model that fits 350 clips can key on who moves rather than
how. The head itself learns to classify (its loss descends); everything below the reversal
receives the negated gradient, so its loss ascends there.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from deft_jax.models.experts import encoder


@jax.custom_vjp
def reverse_gradient(x):
  """The identity forward; the negated gradient backward."""
  return x


def _forward(x):
  return x, None


def _backward(_, g):
  return (jax.tree.map(jnp.negative, g),)


reverse_gradient.defvjp(_forward, _backward)


class Adversary(nn.Module):
  """Two-layer MLP over reversed features -> (B, classes) logits."""
  classes: int
  hidden: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = encoder.dense(self.hidden, ("embed", "mlp"), self.dtype, self.param_dtype, "fc1")(reverse_gradient(x))
    return encoder.dense(self.classes, ("mlp", None), self.dtype, self.param_dtype, "fc2")(nn.gelu(x))
