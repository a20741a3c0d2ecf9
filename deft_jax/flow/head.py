"""Head motion out of a face's flow, before any region reads it.

In a real clip the head drifts and turns while the face moves: a translation of a pixel
swamps a micro-expression's tenths of a pixel. One transform aligns the whole clip
(deft_jax/data/align.py), so the head's motion is still in the flow, and is taken out here:

  "similarity": a shift, rotation and scale fitted to the flow on the face's skin outside
                every AU region (forehead, temples, jaw), where no AU moves the skin;
  "affine":     the same with a full affine map (a little yaw and pitch shear the face);
  "nose":       the mean flow in a disc at the nose tip, subtracted (MELLM's choice: the
                nose tip moves with the skull, not with the AUs);
  "none":       the flow as measured.

The fits are robust (iteratively reweighted least squares with Cauchy weights, Holland &
Welsch 1977) so a blink or a stray hair outside the regions does not tilt them.
"""

import numpy as np

from deft_jax.facs import regions

HEAD_MODELS = ("none", "similarity", "affine", "nose")
NOSE_RADIUS = 0.08  # canonical units: a disc of about 5 px at 64 px


def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
  """Canonical x and y of each pixel centre of a size x size crop."""
  coords = np.linspace(-1.0, 1.0, size)
  ys, xs = np.meshgrid(coords, coords, indexing="ij")
  return xs, ys


def face_mask(size: int, landmarks=None) -> np.ndarray:
  """(S, S) bool: skin that moves only with the head.

  Inside the face (the jaw line closed over a forehead half an inter-ocular distance above
  the brows, or an ellipse filling the crop without landmarks) and outside every AU region
  (placed by the landmarks, else canonical).
  """
  import cv2  # pylint: disable=import-outside-toplevel
  points = regions.as_points(landmarks)
  if points is None:
    xs, ys = _pixel_grid(size)
    face = (xs / 0.8) ** 2 + (ys / 0.98) ** 2 <= 1
  else:
    forehead = points[26:16:-1] - [0, 0.5 * regions.interocular(points)]
    outline = regions.to_pixels(np.concatenate([points[:17], forehead]), size)
    face = np.zeros((size, size), np.uint8)
    cv2.fillPoly(face, [np.round(outline * 16).astype(np.int32)], 1, shift=4)
    face = face.astype(bool)
  boxes = regions.region_boxes(points if points is not None else None)
  return face & ~regions.region_masks(size, boxes=boxes).any(0)


def _design(size: int, model: str, mask: np.ndarray) -> np.ndarray:
  """Columns (2 * pixels in mask, K) of the head motion model, in pixels per unit."""
  xs, ys = _pixel_grid(size)
  x, y = xs[mask] * (size - 1) / 2, ys[mask] * (size - 1) / 2  # pixels from the centre
  one, zero = np.ones_like(x), np.zeros_like(x)
  if model == "similarity":  # shift, scale, rotation (first order)
    cols = [(one, zero), (zero, one), (x, y), (-y, x)]
  else:  # affine
    cols = [(one, zero), (zero, one), (x, zero), (y, zero), (zero, x), (zero, y)]
  return np.stack([np.concatenate(c) for c in cols], -1)


def fit(flow: np.ndarray, model: str = "similarity", mask: np.ndarray | None = None, landmarks=None,
        iterations: int = 5) -> np.ndarray:
  """(S, S, 2) the head's part of an (S, S, 2) flow (pixels) under `model`."""
  flow = np.asarray(flow, np.float64)
  if flow.ndim != 3:
    raise ValueError(f"flow of shape {flow.shape}; expected (S, S, 2)")
  return fit_many(flow[None], model, mask, landmarks, iterations)[0]


def fit_many(flows: np.ndarray, model: str = "similarity", mask: np.ndarray | None = None, landmarks=None,
             iterations: int = 5) -> np.ndarray:
  """(N, S, S, 2) the head's part of each of N flows (one face, so one mask), solved together."""
  flows = np.asarray(flows, np.float64)
  size = flows.shape[1]
  if flows.ndim != 4 or flows.shape[1:] != (size, size, 2):
    raise ValueError(f"flows of shape {flows.shape}; expected (N, S, S, 2)")
  if model not in HEAD_MODELS:
    raise ValueError(f"head motion model {model!r}; use one of {HEAD_MODELS}")
  if model == "none":
    return np.zeros_like(flows)
  if model == "nose":
    points = regions.as_points(landmarks)
    tip = regions.CANONICAL_68[30] if points is None else points[30]
    xs, ys = _pixel_grid(size)
    disc = (xs - tip[0]) ** 2 + (ys - tip[1]) ** 2 <= NOSE_RADIUS ** 2
    return np.broadcast_to(flows[:, disc].mean(1)[:, None, None], flows.shape).copy()
  mask = face_mask(size, landmarks) if mask is None else np.asarray(mask, bool)
  if mask.sum() < 8:
    raise ValueError(f"head motion fit on {int(mask.sum())} pixels; it needs a mask of at least 8")
  a = _design(size, model, mask)  # (M, K)
  y = np.concatenate([flows[..., 0][:, mask], flows[..., 1][:, mask]], axis=1)  # (N, M)
  w = np.ones_like(y)
  k = a.shape[1]
  outer = (a[:, :, None] * a[:, None, :]).reshape(len(a), k * k)  # rows of A's outer products
  for _ in range(iterations):
    # Weighted normal equations of every flow at once, (A^T W A) c = A^T W y, as matmuls.
    gram = (w @ outer).reshape(-1, k, k) + 1e-9 * np.eye(k)
    coef = np.linalg.solve(gram, ((w * y) @ a)[..., None])[..., 0]
    r = y - coef @ a.T
    scale = np.maximum(2.385 * 1.4826 * np.median(np.abs(r), axis=1, keepdims=True), 1e-6)  # Cauchy, 95 %
    w = 1.0 / (1.0 + (r / scale) ** 2)
  return (coef @ _design(size, model, np.ones((size, size), bool)).T).reshape(len(flows), 2, size, size).transpose(
      0, 2, 3, 1)


def remove(flow: np.ndarray, model: str = "similarity", mask: np.ndarray | None = None, landmarks=None) -> np.ndarray:
  """The flow (S, S, 2) or flows (N, S, S, 2) with the head's motion (fit) taken out, float32."""
  flow = np.asarray(flow, np.float64)
  many = fit_many(flow, model, mask, landmarks) if flow.ndim == 4 else fit(flow, model, mask, landmarks)
  return (flow - many).astype(np.float32)
