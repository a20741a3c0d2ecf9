"""Face alignment: find the face on a clip's onset frame, fit 68 landmarks, and map it to the
canonical face with one similarity transform that then crops every frame of the clip.

One transform per clip (not per frame) keeps the head's motion in the frames, where the flow
sees it and head-motion removal (deft_jax/flow/head.py) takes it out, instead of hiding it in
frame-to-frame warps that would also move the skin. The transform is the least-squares
similarity from the landmarks to regions.CANONICAL_68 (Umeyama, "Least-squares estimation of
transformation parameters between two point patterns", IEEE TPAMI 1991), so the crop puts the
eyes and mouth where the canonical layout, the region boxes and the synthetic faces have them.

Detectors: "dlib" (its HOG frontal face detector, the default), "haar" (OpenCV's cascade,
opencv-python < 5) and "centre" (the centred square, always found). Landmarks come from
dlib's 68-point shape predictor (face_recognition_models ships the file; its training data,
iBUG 300-W, excludes commercial use). Without landmarks (landmarks=False) the face box,
squared and grown by `margin`, is the crop.
"""

import dataclasses
import functools
import importlib.util
import os

import cv2
import numpy as np

from deft_jax.data import faces
from deft_jax.facs import regions

DETECTORS = ("dlib", "haar", "centre")
PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
# Brows, eyes, nose and mouth: the jaw line (0-16) is the least stable of the 68 points under
# pose and the one a beard or collar moves, so the fit leaves it out by default.
INNER_POINTS = tuple(range(17, 68))


class AlignError(ValueError):
  """A frame that cannot be aligned (no face, no detector); the message says why."""


class NoFace(AlignError):
  """No face found by any of the configured detectors."""


@dataclasses.dataclass(frozen=True)
class AlignConfig:
  """How a clip's face is found and cropped.

  detectors: tried in order until one finds a face ("centre" always does).
  size: side of the aligned crop (pixels).
  landmarks: fit the 68 landmarks in the face box and align by them; else crop the box.
  fit: "inner" (landmarks 17-67) or "all" 68 in the similarity fit.
  upsample: dlib's detector upsampling of the frame (finds faces under ~80 px, ~4x slower).
  margin: the box crop's margin, a share of the box side on each edge (landmarks=False).
  face: which face when several are found: 0 the largest, 1 the next, ...
  """
  detectors: tuple[str, ...] = ("dlib",)
  size: int = 128
  landmarks: bool = True
  fit: str = "inner"
  upsample: int = 0
  margin: float = 0.15
  face: int = 0

  def __post_init__(self):
    bad = [d for d in self.detectors if d not in DETECTORS]
    if bad or not self.detectors:
      raise ValueError(f"align detectors {self.detectors!r}; use some of {DETECTORS}")
    if self.fit not in ("inner", "all"):
      raise ValueError(f"align fit {self.fit!r}; use 'inner' or 'all'")
    if self.size < 8:
      raise ValueError(f"align size {self.size}: a crop needs at least 8 px")


@dataclasses.dataclass(frozen=True)
class Alignment:
  """A clip's face: the frame -> crop transform and what was found.

  matrix: (2, 3) affine map from frame pixels to the pixels of a `size` crop.
  landmarks: (68, 2) onset-frame landmarks in crop pixels, or None (no landmark fit).
  box: the detected face (x, y, w, h) in frame pixels.
  detector: the detector that found it; faces: how many faces it found.
  """
  matrix: np.ndarray
  size: int
  landmarks: np.ndarray | None
  box: tuple[int, int, int, int]
  detector: str
  faces: int

  def scaled(self, size: int) -> np.ndarray:
    """The (2, 3) frame -> crop matrix for a crop of `size` pixels (same face, other resolution)."""
    s = (size - 1) / (self.size - 1)
    return np.array([[s, 0, 0], [0, s, 0]]) @ np.vstack([self.matrix, [0, 0, 1]])

  def crop(self, image: np.ndarray, size: int | None = None) -> np.ndarray:
    """The aligned face of `image` at `size` px (default self.size).

    Warps at the face's own scale, then shrinks with area averaging: a direct bilinear warp
    to a small crop would alias the skin texture that the flow tracks.
    """
    size = size or self.size
    scale = np.sqrt(abs(np.linalg.det(self.matrix[:, :2]))) * (size - 1) / (self.size - 1)
    native = size if scale >= 1 else int(np.ceil(size / scale))
    warped = cv2.warpAffine(image, self.scaled(native), (native, native), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    return warped if native == size else cv2.resize(warped, (size, size), interpolation=cv2.INTER_AREA)

  def canonical_landmarks(self) -> np.ndarray | None:
    """Landmarks in canonical [-1, 1] coordinates of the crop, or None."""
    return None if self.landmarks is None else regions.to_canonical(self.landmarks, self.size)

  def regions(self) -> dict[str, tuple[float, float, float, float]]:
    """Region boxes in canonical coordinates: placed by the landmarks, else the canonical ones."""
    return regions.region_boxes(self.canonical_landmarks())

  def as_dict(self) -> dict:
    """JSON-ready: detector, face count, box, matrix, landmarks (crop px) and region boxes."""
    return {"detector": self.detector, "faces": self.faces, "box": list(self.box), "size": self.size,
            "matrix": np.round(self.matrix, 6).tolist(),
            "landmarks": None if self.landmarks is None else np.round(self.landmarks, 2).tolist(),
            "regions": {k: [round(v, 4) for v in box] for k, box in self.regions().items()},
            "regions_placed": self.landmarks is not None}


def umeyama(source: np.ndarray, target: np.ndarray) -> np.ndarray:
  """(2, 3) least-squares similarity (rotation, uniform scale, shift) taking source to target.

  Umeyama 1991, eqs. 40-42: the rotation from the SVD of the points' cross-covariance, with
  the sign fix that keeps it a rotation (no reflection).
  """
  source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
  mu_s, mu_t = source.mean(0), target.mean(0)
  a, b = source - mu_s, target - mu_t
  u, d, vt = np.linalg.svd(b.T @ a / len(source))
  sign = np.ones(2)
  if np.linalg.det(u) * np.linalg.det(vt) < 0:
    sign[-1] = -1
  rotation = u @ np.diag(sign) @ vt
  scale = (d * sign).sum() / (a ** 2).sum() * len(source)
  return np.hstack([scale * rotation, (mu_t - scale * rotation @ mu_s)[:, None]])


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
  """Points (N, 2) through a (2, 3) affine matrix."""
  return np.asarray(points, np.float64) @ matrix[:, :2].T + matrix[:, 2]


def model_file(name: str = PREDICTOR_FILE) -> str:
  """Path of a dlib model file shipped by face_recognition_models (found without importing it:
  its __init__ imports pkg_resources)."""
  spec = importlib.util.find_spec("face_recognition_models")
  folders = list(spec.submodule_search_locations or []) if spec else []
  for folder in folders:
    path = os.path.join(folder, "models", name)
    if os.path.exists(path):
      return path
  raise AlignError(f"no {name}: install face_recognition_models==0.3.0 (pip), or align with landmarks=False")


@functools.cache
def _dlib():
  try:
    import dlib  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise AlignError("the dlib detector needs dlib: pip install dlib-bin (or use detectors haar/centre)") from None
  return dlib


@functools.cache
def _hog_detector():
  return _dlib().get_frontal_face_detector()


@functools.cache
def _predictor():
  return _dlib().shape_predictor(model_file())


def check_dlib() -> None:
  """Raises AlignError before a build starts (no dlib, no landmark model), not on its first clip."""
  _hog_detector()
  _predictor()


def detect(gray: np.ndarray, detector: str = "dlib", upsample: int = 0) -> list[tuple[int, int, int, int]]:
  """Faces (x, y, w, h) in a uint8 grey image, largest first."""
  if detector == "dlib":
    boxes = [(r.left(), r.top(), r.width(), r.height()) for r in _hog_detector()(gray, upsample)]
  elif detector == "haar":
    try:
      found = faces.detect_all(gray)
    except faces.FaceDetectorMissing as e:
      raise AlignError(str(e)) from None
    boxes = [tuple(int(v) for v in b) for b in found]
  elif detector == "centre":
    x0, y0, side = faces.centre_box(gray.shape)
    boxes = [(x0, y0, side, side)]
  else:
    raise ValueError(f"detector {detector!r}; use one of {DETECTORS}")
  return sorted(boxes, key=lambda b: -b[2] * b[3])


def landmarks68(gray: np.ndarray, box) -> np.ndarray:
  """(68, 2) landmarks (pixels) of the face in `box` (x, y, w, h) of a uint8 grey image."""
  dlib = _dlib()
  x, y, w, h = (int(v) for v in box)
  shape = _predictor()(gray, dlib.rectangle(x, y, x + w, y + h))
  return np.array([(p.x, p.y) for p in shape.parts()], np.float64)


def from_landmarks(points: np.ndarray, size: int, fit: str = "inner") -> np.ndarray:
  """(2, 3) frame -> crop matrix putting 68 landmarks (frame px) on the canonical face."""
  use = list(INNER_POINTS) if fit == "inner" else slice(None)
  return umeyama(np.asarray(points)[use], regions.to_pixels(regions.CANONICAL_68, size)[use])


def from_box(box, margin: float, shape, size: int) -> np.ndarray:
  """(2, 3) frame -> crop matrix of the squared, grown face box (the landmark-free crop)."""
  x0, y0, side = faces.square_box(box, margin, shape)
  s = (size - 1) / max(side - 1, 1)
  return np.array([[s, 0, -s * x0], [0, s, -s * y0]])


def align(image: np.ndarray, config: AlignConfig = AlignConfig()) -> Alignment:
  """The Alignment of the face in an RGB (or grey) uint8 frame; NoFace when none is found."""
  gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
  for detector in config.detectors:
    boxes = detect(gray, detector, config.upsample)
    if not boxes:
      continue
    if config.face >= len(boxes):
      raise AlignError(f"face {config.face} asked for, but {detector} found {len(boxes)} face(s)")
    box = tuple(int(v) for v in boxes[config.face])
    if config.landmarks:
      frame_points = landmarks68(gray, box)
      matrix = from_landmarks(frame_points, config.size, config.fit)
      points = apply(matrix, frame_points)
    else:
      margin = 0.0 if detector == "centre" else config.margin  # the centre square is the whole crop
      matrix, points = from_box(box, margin, gray.shape, config.size), None
    return Alignment(matrix, config.size, points, box, detector, len(boxes))
  raise NoFace(f"no face found by {' or '.join(config.detectors)}")
