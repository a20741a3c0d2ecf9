"""Gradient reversal for a domain adversary (Ganin & Lempitsky, ICML 2015).

DEFT's adversary (models/deft.py, DeftConfig.adversary_classes) names each clip's subject (or
corpus) from the feature the emotion head reads, behind this reversal: the head itself learns
to classify (its loss descends), while everything beneath the reversal receives the negated
gradient and learns features from which the domain cannot be told. Cross-subject MER fails on
identity: a model that fits 350 clips can key on who moves rather than how.
"""

import jax
import jax.numpy as jnp


@jax.custom_vjp
def reverse_gradient(x):
  """The identity forward; the negated gradient backward."""
  return x


def _forward(x):
  return x, None


def _backward(_, g):
  return (jax.tree.map(jnp.negative, g),)


reverse_gradient.defvjp(_forward, _backward)
