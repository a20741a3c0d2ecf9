"""Face landmarks and regions on an aligned crop.

Canonical coordinates span the crop as [-1, 1] on both axes (x right, y down). Landmarks
are given for the image-left half; `mirror` gives the other half. Without detected
landmarks, the canonical layout scaled to the crop stands in, which is what aligned MER
crops (CASME II "Cropped") make reasonable.
"""

import numpy as np

from deft_jax.facs import catalogue

# Image-left landmarks of an average aligned face.
CANONICAL_LANDMARKS: dict[str, tuple[float, float]] = {
    "brow": (-0.38, -0.42),
    "eye": (-0.35, -0.22),
    "nose": (0.0, 0.12),
    "mouth": (0.0, 0.48),
    "mouth_corner": (-0.28, 0.48),
    "chin": (0.0, 0.78),
}

# Region boxes (x0, y0, x1, y1) in canonical coordinates.
REGION_BOXES: dict[str, tuple[float, float, float, float]] = {
    "brows": (-0.70, -0.62, 0.70, -0.30),
    "eyes": (-0.65, -0.32, 0.65, -0.08),
    "nose": (-0.16, -0.10, 0.16, 0.30),
    "cheeks": (-0.65, -0.08, 0.65, 0.30),
    "mouth": (-0.48, 0.30, 0.48, 0.64),
    "chin": (-0.40, 0.64, 0.40, 0.96),
}
assert tuple(REGION_BOXES) == catalogue.REGIONS


def mirror(point: tuple[float, float]) -> tuple[float, float]:
  return (-point[0], point[1])


def au_sites(au: catalogue.ActionUnit, landmarks=None, side: str = "both"):
  """Yields (centre, direction) of an AU's skin displacement, per face half.

  `side` is "both", "left" or "right" (image halves) for unilateral AUs such as contempt's
  AU12/AU14; midline AUs have one site whatever the side.
  """
  lm = landmarks or CANONICAL_LANDMARKS
  ax, ay = lm[au.anchor]
  centre = (ax + au.offset[0], ay + au.offset[1])
  if not au.bilateral:
    yield centre, au.direction
    return
  if side in ("both", "left"):
    yield centre, au.direction
  if side in ("both", "right"):
    yield mirror(centre), (-au.direction[0], au.direction[1])


def to_pixels(points: np.ndarray, size: int) -> np.ndarray:
  """Canonical [-1, 1] coordinates -> pixel coordinates of a size x size crop."""
  return (np.asarray(points, np.float32) + 1.0) * 0.5 * (size - 1)


def region_masks(size: int, boxes=None) -> np.ndarray:
  """(num_regions, size, size) boolean masks of the face regions on a square crop."""
  boxes = boxes or REGION_BOXES
  coords = np.linspace(-1.0, 1.0, size, dtype=np.float32)
  ys, xs = np.meshgrid(coords, coords, indexing="ij")
  masks = [(xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1) for x0, y0, x1, y1 in boxes.values()]
  return np.stack(masks)
