"""Image pairs with exactly known flow, for testing and benchmarking optical flow.

Images are analytic functions f(x, y) of pixel coordinates. A displacement field d moves the
point x to Phi(x) = x + d(x); the second frame is f(Phi^-1(x)), rendered by inverting Phi with
a fixed-point iteration rather than by resampling pixels, so frame1(x + d(x)) = frame0(x)
holds exactly and d is the true flow. All NumPy, float64.
"""

import numpy as np


def texture(rng, n_waves=48, wavelengths=(5.0, 32.0)):
  """A smooth random texture: a sum of plane waves with random directions and phases."""
  k = 2 * np.pi / rng.uniform(*wavelengths, n_waves)
  angle = rng.uniform(0, 2 * np.pi, n_waves)
  kx, ky = k * np.cos(angle), k * np.sin(angle)
  phase = rng.uniform(0, 2 * np.pi, n_waves)
  amp = rng.uniform(0.5, 1.0, n_waves) / np.sqrt(n_waves)

  def f(x, y):
    arg = x[..., None] * kx + y[..., None] * ky + phase
    return 0.5 + 0.25 * (amp * np.cos(arg)).sum(-1)

  return f


def _blob(x, y, cx, cy, sx, sy):
  return np.exp(-0.5 * (((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2))


def face(rng, size):
  """A face-like image on a size x size canvas: skin texture, brows, eyes, nose, mouth.

  Returns (f, mask): the image function and a boolean (size, size) mask of the face ellipse.
  """
  skin = texture(rng, wavelengths=(4.0, 24.0))
  s = size / 128.0
  c = size / 2 + rng.uniform(-3, 3, 2) * s
  features = [  # (dx, dy, sx, sy, darkness) relative to the face centre, at 128 px
      (-22, -26, 11, 3, 0.35), (22, -26, 11, 3, 0.35),  # brows
      (-20, -14, 7, 4, 0.45), (20, -14, 7, 4, 0.45),  # eyes
      (0, 8, 4, 10, 0.15),  # nose
      (0, 32, 17, 4, 0.4),  # mouth
  ]

  def f(x, y):
    r2 = ((x - c[0]) / (44 * s)) ** 2 + ((y - c[1]) / (56 * s)) ** 2
    head = 1 / (1 + np.exp(4 * (r2 - 1)))
    img = 0.25 + 0.4 * head + 0.35 * head * (skin(x, y) - 0.5)
    for dx, dy, sx, sy, dark in features:
      img = img - dark * _blob(x, y, c[0] + dx * s, c[1] + dy * s, sx * s, sy * s)
    return img

  y, x = np.mgrid[:size, :size].astype(np.float64)
  mask = ((x - c[0]) / (40 * s)) ** 2 + ((y - c[1]) / (52 * s)) ** 2 <= 1
  return f, mask


def translation(tx, ty):
  return lambda x, y: (np.full_like(x, tx), np.full_like(y, ty))


def rotation(degrees, cx, cy):
  """Rotation by `degrees` about (cx, cy), as a displacement field."""
  a = np.deg2rad(degrees)
  c, s = np.cos(a), np.sin(a)

  def d(x, y):
    px, py = x - cx, y - cy
    return c * px - s * py - px, s * px + c * py - py

  return d


def bumps(rng, size, n=6, amplitude=(0.2, 3.0), width=(6.0, 14.0)):
  """Local micro-deformations: Gaussian bumps of displacement, each with its own direction."""
  centres = rng.uniform(0.25 * size, 0.75 * size, (n, 2))
  amps = rng.uniform(*amplitude, n)
  angles = rng.uniform(0, 2 * np.pi, n)
  widths = rng.uniform(*width, n) * size / 128.0

  def d(x, y):
    g = _blob(x[..., None], y[..., None], centres[:, 0], centres[:, 1], widths, widths) * amps
    return (g * np.cos(angles)).sum(-1), (g * np.sin(angles)).sum(-1)

  return d


def smooth_warp(rng, size, amplitude=2.0, wavelength=48.0):
  """A smooth random displacement field of a few low-frequency waves per component."""
  k = 2 * np.pi / wavelength
  params = rng.uniform(-1, 1, (2, 3, 4))

  def component(x, y, p):
    return sum(a * np.sin(k * (bx * x + by * y) + ph) for a, bx, by, ph in p) * amplitude / 3

  return lambda x, y: (component(x, y, params[0]), component(x, y, params[1]))


def compose(*fields):
  """Sum of displacement fields."""
  def d(x, y):
    parts = [field(x, y) for field in fields]
    return sum(p[0] for p in parts), sum(p[1] for p in parts)
  return d


def render_pair(f, d, size, iterations=60):
  """(frame0, frame1, flow): frame1(x + flow(x)) = frame0(x), flow = d on the pixel grid."""
  y, x = np.mgrid[:size, :size].astype(np.float64)
  px, py = x, y  # solve p + d(p) = x by p <- x - d(p); contracts while |grad d| < 1
  for _ in range(iterations):
    dx, dy = d(px, py)
    px, py = x - dx, y - dy
  flow = np.stack(d(x, y), axis=-1)
  return f(x, y), f(px, py), flow
