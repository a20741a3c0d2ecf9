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

# The landmark each region box follows when a face's own landmarks are given.
REGION_ANCHORS = {"brows": "brow", "eyes": "eye", "nose": "nose", "cheeks": "eye", "mouth": "mouth", "chin": "chin"}


def mirror(point: tuple[float, float]) -> tuple[float, float]:
  return (-point[0], point[1])


def image_half(subject_side: str) -> str:
  """The image half on which a subject's side shows ("both" stays "both").

  FACS's L/R, and the datasets' AU sheets, name the subject's own side, which a frontal,
  unmirrored camera shows on the opposite half of the image. The map is its own inverse.
  """
  return {"left": "right", "right": "left"}.get(subject_side, subject_side)


subject_side = image_half  # image half -> the subject's side


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


def region_boxes(landmarks=None) -> dict[str, tuple[float, float, float, float]]:
  """Region boxes fitted to a face's landmarks, or the canonical ones when None.

  Each box moves with its anchor landmark (REGION_ANCHORS): vertically by the landmark's
  shift, and, for a bilateral landmark (brow, eye), widened or narrowed by its distance from
  the midline; a midline landmark (nose, mouth, chin) also shifts the box sideways.
  """
  if landmarks is None:
    return dict(REGION_BOXES)
  missing = sorted(set(REGION_ANCHORS.values()) - set(landmarks))
  if missing:
    raise KeyError(f"landmarks lack {missing}; they need {sorted(set(REGION_ANCHORS.values()))}")
  boxes = {}
  for region, (x0, y0, x1, y1) in REGION_BOXES.items():
    name = REGION_ANCHORS[region]
    (cx, cy), (lx, ly) = CANONICAL_LANDMARKS[name], landmarks[name]
    dy = ly - cy
    if abs(cx) > 1e-6:  # a bilateral landmark, given for the image-left half
      scale = abs(lx) / abs(cx)
      boxes[region] = (x0 * scale, y0 + dy, x1 * scale, y1 + dy)
    else:
      boxes[region] = (x0 + lx - cx, y0 + dy, x1 + lx - cx, y1 + dy)
  return boxes


def landmarks_from_pixels(points: dict, size: int) -> dict[str, tuple[float, float]]:
  """Landmarks in pixels of a size x size crop -> canonical coordinates (inverse of to_pixels)."""
  return {k: tuple(float(v) for v in np.asarray(p, np.float64) / (size - 1) * 2.0 - 1.0) for k, p in points.items()}


def region_masks(size: int, boxes=None, landmarks=None) -> np.ndarray:
  """(num_regions, size, size) boolean masks of the face regions on a square crop.

  Boxes are given, or fitted to `landmarks`, or canonical. Pixel centres span [-1, 1].
  """
  boxes = boxes or region_boxes(landmarks)
  coords = np.linspace(-1.0, 1.0, size, dtype=np.float32)
  ys, xs = np.meshgrid(coords, coords, indexing="ij")
  masks = [(xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1) for x0, y0, x1, y1 in boxes.values()]
  return np.stack(masks)


def patch_shares(size: int, patch: int, landmarks=None) -> np.ndarray:
  """(num_regions, grid, grid): the share of each patch's pixels inside each region.

  A patch token summarises its pixels, so a region's token should weigh patches by how much
  of the region they hold, not by whether the patch centre falls inside it.
  """
  if size % patch:
    raise ValueError(f"crop of {size} px does not split into {patch} px patches")
  g = size // patch
  masks = region_masks(size, landmarks=landmarks).astype(np.float32)
  return masks.reshape(len(masks), g, patch, g, patch).mean(axis=(2, 4))
