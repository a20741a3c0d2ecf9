"""Bilinear sampling of an image at moved pixel positions."""

import jax.numpy as jnp


def bilinear(image, x, y):
  """image sampled at (x, y) in pixels; positions outside repeat the edge pixel.

  Matches scipy.ndimage.map_coordinates(order=1, mode='nearest'), which skimage's warp uses.
  """
  h, w = image.shape
  x = jnp.clip(x, 0, w - 1)
  y = jnp.clip(y, 0, h - 1)
  x0 = jnp.clip(jnp.floor(x), 0, w - 2)
  y0 = jnp.clip(jnp.floor(y), 0, h - 2)
  fx, fy = x - x0, y - y0
  flat = image.reshape(-1)
  i00 = (y0 * w + x0).astype(jnp.int32)
  a, b = flat[i00], flat[i00 + 1]
  c, d = flat[i00 + w], flat[i00 + w + 1]
  top = a + fx * (b - a)
  bottom = c + fx * (d - c)
  return top + fy * (bottom - top)
