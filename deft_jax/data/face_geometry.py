"""Where a clip's face sits in its flow: the regions placed by its landmarks, or the flow aligned.

Corpora distributed as fixed-size crops (the MEGC2019 composite: 28 px flow and a 224 px face per
clip, cut from the same box) frame every face alike but do not align them: eyes and mouth land a
pixel or two apart from clip to clip, and inter-ocular distance differs by dataset. A model that
reads the flow's layout (cell tokens, a summary of the stem map) then sees the same skin at
different places. Three geometries, by config:

  canonical  the regions at regions.REGION_BOXES, the flow as stored (nothing measured).
  placed     each clip's regions placed on its own 68 landmarks (regions.place_regions), the flow
             as stored.
  aligned    each clip's flow and face moved by a scale and a shift (no rotation: u and v stay
             the image's axes) that best puts its landmarks on the mean shape of all clips (least
             squares over the 51 inner points, as align.INNER_POINTS); every clip's regions are
             then the mean shape's. The mean shape uses no label. Flow values are not rescaled:
             distributed flow is in per-clip units already.
"""

import cv2
import numpy as np

from deft_jax.data import align, pipeline
from deft_jax.facs import regions

GEOMETRIES = ("canonical", "placed", "aligned")
SCALE_LIMITS = (0.5, 2.0)  # a fit outside these is not a face's landmarks


def fit_scale_shift(points: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
  """(s, t) minimising sum |s p + t - q|^2 over the inner landmarks (closed form)."""
  use = list(align.INNER_POINTS)
  p, q = np.asarray(points, np.float64)[use], np.asarray(target, np.float64)[use]
  pc, qc = p - p.mean(0), q - q.mean(0)
  s = float((pc * qc).sum() / (pc * pc).sum())
  return s, q.mean(0) - s * p.mean(0)


def warp(image: np.ndarray, s: float, t: np.ndarray) -> np.ndarray:
  """A square (S, S, C) image moved by the canonical-coordinate map c -> s c + t, edges repeated."""
  size = image.shape[0]
  k = (size - 1) / 2  # canonical c = pixel / k - 1
  matrix = np.array([[s, 0, k * (1 - s + t[0])], [0, s, k * (1 - s + t[1])]])
  out = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
  return out.reshape(image.shape)


def apply(geometry: str, flow: np.ndarray, face: np.ndarray, landmarks: np.ndarray, clips=()):
  """(flow, face, region boxes (N, R, 4) or None) of N clips under `geometry`.

  flow (N, S, S, C) float, face (N, F, F, 3) uint8, landmarks (N, 68, 2) canonical; `clips`
  names them in errors.
  """
  if geometry not in GEOMETRIES:
    raise ValueError(f"folds.face_geometry must be one of {GEOMETRIES}, got {geometry!r}")
  if geometry == "canonical":
    return flow, face, None
  landmarks = np.asarray(landmarks, np.float64)
  if np.allclose(landmarks, regions.CANONICAL_68[None], atol=1e-5):
    raise ValueError(f"folds.face_geometry={geometry!r}: every clip's landmarks are the canonical face, so "
                     "the dataset measured none (megc2019_composite: use a config that measures them, e.g. f112)")
  if geometry == "placed":
    return flow, face, np.stack([pipeline.region_boxes(p) for p in landmarks])
  target = landmarks.mean(0)
  flow, face = flow.copy(), face.copy()
  for i, points in enumerate(landmarks):
    s, t = fit_scale_shift(points, target)
    if not SCALE_LIMITS[0] <= s <= SCALE_LIMITS[1]:
      name = clips[i] if len(clips) > i else f"clip {i}"
      raise ValueError(f"{name}: its landmarks fit the mean face only at scale {s:.2f} (expected "
                       f"{SCALE_LIMITS[0]}-{SCALE_LIMITS[1]}): they are not a face's")
    flow[i], face[i] = warp(flow[i], s, t), warp(face[i], s, t)
  return flow, face, np.repeat(pipeline.region_boxes(target)[None], len(flow), 0)
