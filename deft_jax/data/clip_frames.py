"""Frame images of a clip: found by number, decoded strictly, sampled from onset to offset.

Shared by the corpus builders and `deft-jax predict` (no builder needed to read a clip).
"""

import pathlib
import re

import cv2
import numpy as np

from deft_jax.data.corpus_errors import Skip


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".bmp", ".png")


def frame_files(folder: pathlib.Path) -> dict[int, pathlib.Path]:
  """Image files by frame number: the last run of digits in the name (img46, 006_05562)."""
  frames = {}
  for path in folder.iterdir():
    digits = re.findall(r"\d+", path.stem)
    if path.suffix.lower() not in IMAGE_SUFFIXES or not digits:
      continue
    number = int(digits[-1])
    if number in frames:
      raise Skip(f"{folder}: {frames[number].name} and {path.name} are both frame {number}")
    frames[number] = path
  return frames


class BadFrame(Skip):
  """A frame image that does not decode whole; its clip is skipped (or, by flag, the build stops)."""


JPEG_START, JPEG_END = b"\xff\xd8", b"\xff\xd9"  # start/end-of-image markers of a whole JPEG (ITU T.81, B.2.1)


def read_rgb(path: pathlib.Path) -> np.ndarray:
  """The RGB pixels of a frame, decoded strictly.

  libjpeg decodes a truncated JPEG without failing (it greys the missing rows and prints a
  nameless "Premature end of JPEG file"), so a JPEG must end with its end-of-image marker
  (padding bytes after it allowed) before OpenCV decodes it.
  """
  try:
    data = path.read_bytes()
  except OSError as e:
    raise BadFrame(f"{path}: unreadable ({e.strerror or e})") from None
  jpeg = data.startswith(JPEG_START)
  if jpeg and not data.rstrip(b"\x00\r\n ").endswith(JPEG_END):
    raise BadFrame(f"{path}: truncated JPEG (no end-of-image marker): the frame does not decode whole")
  image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
  if image is None:
    raise BadFrame(f"{path}: unreadable image ({len(data)} bytes that do not decode)")
  return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def gray(image: np.ndarray) -> np.ndarray:
  return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def sample_frames(onset: int, apex: int, offset: int, num: int) -> tuple[list[int], int]:
  """`num` frame numbers from onset to offset holding onset (first), apex and offset (last).

  The frames between are spread evenly over onset->apex and apex->offset in proportion to
  their lengths; a clip shorter than `num` repeats frames. Returns (numbers, apex position).
  """
  if not onset < apex <= offset or num < 3:
    raise ValueError(f"need onset < apex <= offset and num >= 3, got {onset}, {apex}, {offset}, {num}")
  slots = num - 2
  rise, fall = apex - onset, offset - apex
  after = min(slots, max(1, round(slots * fall / (rise + fall)))) if fall else 0
  before = slots - after
  between = np.linspace(onset, apex, before + 2)[1:-1]
  later = np.linspace(apex, offset, after + 1)[1:]
  numbers = [onset, *np.rint(between).astype(int).tolist(), apex, *np.rint(later).astype(int).tolist()]
  return numbers, before + 1
