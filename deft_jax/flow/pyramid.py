"""Image pyramids for coarse-to-fine flow: blur, halve, and carry the flow back up.

Every level shape is computed in Python from the static input shape, so each level compiles
to fixed shapes (Sanchez et al., IPOL 2013, Sec. 2.3: zoom factor 0.5 between scales).
"""

import math

import jax.numpy as jnp
import numpy as np


def level_shapes(shape, min_size, max_scales):
  """Shapes from fine to coarse; halve while the smaller side stays >= min_size."""
  shapes = [tuple(shape)]
  while len(shapes) < max_scales:
    nxt = tuple(math.ceil(n / 2) for n in shapes[-1])
    if min(nxt) < min_size:
      break
    shapes.append(nxt)
  return shapes


def _gaussian_taps(sigma):
  radius = int(4.0 * sigma + 0.5)  # scipy.ndimage's truncate=4
  x = np.arange(-radius, radius + 1, dtype=np.float64)
  w = np.exp(-0.5 * (x / sigma) ** 2)
  return w / w.sum()


def gaussian_blur(image, sigma):
  """Separable Gaussian with symmetric borders (scipy.ndimage mode='reflect')."""
  if sigma <= 0:
    return image
  taps = _gaussian_taps(sigma)
  r = len(taps) // 2
  h, w = image.shape
  padded = jnp.pad(image, r, mode="symmetric")
  rows = sum(float(t) * padded[k:k + h, :] for k, t in enumerate(taps))
  return sum(float(t) * rows[:, k:k + w] for k, t in enumerate(taps))


def _linear_indices(n_in, n_out):
  """Half-pixel-centred bilinear sampling positions, clamped to the edge."""
  x = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
  x = np.clip(x, 0, n_in - 1)
  lo = np.floor(x).astype(np.int64)
  hi = np.minimum(lo + 1, n_in - 1)
  return lo, hi, (x - lo).astype(np.float32)


def _resize_linear(a, shape):
  for axis, n_out in enumerate(shape):
    lo, hi, frac = _linear_indices(a.shape[axis], n_out)
    frac = frac.reshape((-1, 1) if axis == 0 else (1, -1))
    a = jnp.take(a, lo, axis=axis) * (1 - frac) + jnp.take(a, hi, axis=axis) * frac
  return a


def halve(image, sigma):
  """Blur, then resample to ceil(n / 2) per axis, as skimage.transform.pyramid_reduce does.

  Samples sit at the centres of the output pixels, so for even n each is the mean of a 2x2 block.
  """
  image = gaussian_blur(image, sigma)
  return _resize_linear(image, tuple(math.ceil(n / 2) for n in image.shape))


def _resize_nearest(a, shape):
  # scipy.ndimage.zoom(order=0): corner-aligned positions, rounded (what skimage uses).
  for axis, n_out in enumerate(shape):
    n_in = a.shape[axis]
    x = np.arange(n_out) * ((n_in - 1) / max(n_out - 1, 1))
    a = jnp.take(a, np.floor(x + 0.5).astype(np.int64), axis=axis)
  return a


def upsample_flow(u, v, shape, mode):
  """Resize flow components (u along x, v along y) to `shape` and rescale them in pixels."""
  resize = {"linear": _resize_linear, "nearest": _resize_nearest}[mode]
  sy, sx = (n / m for n, m in zip(shape, u.shape))
  return resize(u, shape) * sx, resize(v, shape) * sy
