"""Face boxes for raw MER frames: OpenCV Haar detection on the onset frame, one box per clip.

Landmark alignment (dlib's detector and 68 points, a similarity to the canonical face) is in
deft_jax/data/align.py, which falls back on these boxes when configured to.

The same square box crops every frame of a clip, so head position, not the crop, is all that
can move between frames. Haar cascades ship in opencv-python < 5 (`cv2.data.haarcascades`);
OpenCV 5 removed `cv2.CascadeClassifier`, and then detection stops with an error saying so.
"""

import functools
import os

import cv2
import numpy as np

CASCADE = "haarcascade_frontalface_default.xml"


class FaceDetectorMissing(RuntimeError):
  """This OpenCV cannot detect faces (no Haar cascades)."""


@functools.cache
def _cascade():
  path = os.path.join(getattr(getattr(cv2, "data", None), "haarcascades", ""), CASCADE)
  if not hasattr(cv2, "CascadeClassifier") or not os.path.exists(path):
    raise FaceDetectorMissing(
        f"OpenCV {cv2.__version__} has no Haar cascade {CASCADE} (cv2.CascadeClassifier was "
        "removed in OpenCV 5): install opencv-python<5, or build with ClipConfig(face='centre').")
  return cv2.CascadeClassifier(path)


def check_detector() -> None:
  """Raises FaceDetectorMissing before a build starts, rather than on its first clip."""
  _cascade()


def detect_all(gray: np.ndarray) -> list[tuple[int, int, int, int]]:
  """Every frontal face (x, y, w, h) Haar finds in a uint8 grayscale image, largest first."""
  min_side = max(24, min(gray.shape) // 8)
  boxes = _cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5,
                                      minSize=(min_side, min_side))
  return sorted((tuple(int(v) for v in b) for b in boxes), key=lambda b: -b[2] * b[3])


def detect(gray: np.ndarray) -> tuple[int, int, int, int] | None:
  """The largest frontal face (x, y, w, h) in a uint8 grayscale image, or None."""
  boxes = detect_all(gray)
  return boxes[0] if boxes else None


def square_box(box, margin: float, shape) -> tuple[int, int, int]:
  """(x0, y0, side): the box squared, grown by `margin` of its side on each edge, kept inside."""
  height, width = shape[:2]
  x, y, w, h = box
  side = min(int(round(max(w, h) * (1 + 2 * margin))), height, width)
  x0 = int(round(x + w / 2 - side / 2))
  y0 = int(round(y + h / 2 - side / 2))
  return min(max(x0, 0), width - side), min(max(y0, 0), height - side), side


def centre_box(shape) -> tuple[int, int, int]:
  """The largest centred square: the fallback when no face is found."""
  height, width = shape[:2]
  side = min(height, width)
  return (width - side) // 2, (height - side) // 2, side


def crop(image: np.ndarray, box, size: int) -> np.ndarray:
  """image[box] resized to size x size; box None takes the whole (already aligned) image, and
  an align.Alignment crops its aligned face."""
  if hasattr(box, "crop"):
    return box.crop(image, size)
  if box is not None:
    x0, y0, side = box
    image = image[y0:y0 + side, x0:x0 + side]
  interpolation = cv2.INTER_AREA if min(image.shape[:2]) >= size else cv2.INTER_LINEAR
  return cv2.resize(image, (size, size), interpolation=interpolation)
