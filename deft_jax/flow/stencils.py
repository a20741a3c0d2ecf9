"""Finite differences over the last two axes (y, x) with the boundary rules TV-L1 relies on.

Leading axes are batch axes; the last axis is x (columns), the one before it y (rows).
"""

import jax.numpy as jnp


def _take(a, axis, start, stop):
  index = [slice(None)] * a.ndim
  index[axis] = slice(start, stop)
  return a[tuple(index)]


def _central_diff(a, axis):
  """np.gradient's rule: central inside, one-sided first order at both ends."""
  first = _take(a, axis, 1, 2) - _take(a, axis, 0, 1)
  inner = (_take(a, axis, 2, None) - _take(a, axis, 0, -2)) * 0.5
  last = _take(a, axis, -1, None) - _take(a, axis, -2, -1)
  return jnp.concatenate([first, inner, last], axis)


def central_gradient(a):
  """(d/dx, d/dy) of an image, as np.gradient computes them."""
  return _central_diff(a, -1), _central_diff(a, -2)


def _forward_diff(a, axis):
  diff = _take(a, axis, 1, None) - _take(a, axis, 0, -1)
  return jnp.concatenate([diff, jnp.zeros_like(_take(a, axis, 0, 1))], axis)


def forward_gradient(a):
  """(d/dx, d/dy) by forward differences, zero on the last column / row.

  Chambolle (2004) eq. (2.1): the discrete gradient whose adjoint is -divergence().
  """
  return _forward_diff(a, -1), _forward_diff(a, -2)


def _backward_diff(p, axis):
  # Chambolle (2004) eq. (2.2): p is taken as zero on the last line and before the first.
  inner = jnp.concatenate([_take(p, axis, 0, -1), jnp.zeros_like(_take(p, axis, 0, 1))], axis)
  shifted = jnp.concatenate([jnp.zeros_like(_take(p, axis, 0, 1)), _take(p, axis, 0, -1)], axis)
  return inner - shifted


def divergence(px, py):
  """Discrete divergence, the negative adjoint of forward_gradient()."""
  return _backward_diff(px, -1) + _backward_diff(py, -2)


def median3x3(a):
  """3x3 median with symmetric (edge-repeating) borders, like scipy's mode='reflect'."""
  h, w = a.shape[-2:]
  padded = jnp.pad(a, [(0, 0)] * (a.ndim - 2) + [(1, 1), (1, 1)], mode="symmetric")
  taps = [padded[..., i:i + h, j:j + w] for i in range(3) for j in range(3)]
  return jnp.median(jnp.stack(taps), axis=0)
