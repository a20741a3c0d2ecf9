"""Apex spotting for clips without an apex label (SMIC): the frame that moved most."""

import typing

import numpy as np

from deft_jax.flow import dual_tvl1
from deft_jax.flow import head as head_lib
from deft_jax.flow import strain


class Apex(typing.NamedTuple):
  index: int  # apex frame, an index into the clip
  motion: np.ndarray  # (T,) mean flow magnitude from the onset, in pixels; 0 up to the onset
  fallback: bool  # True when nothing moved by min_motion and index is the middle frame


def face_ellipse(height, width, margin=0.1):
  """Boolean mask of the ellipse inscribed in an aligned face crop, `margin` of each side off."""
  y, x = np.mgrid[:height, :width].astype(np.float64)
  ry, rx = (0.5 - margin) * height, (0.5 - margin) * width
  return ((x - (width - 1) / 2) / rx) ** 2 + ((y - (height - 1) / 2) / ry) ** 2 <= 1


def spot_apex(frames, *, onset=0, mask=None, min_motion=0.05, chunk=None, head="none", landmarks=None, **params):
  """Apex of a clip: the frame whose TV-L1 flow from the onset has the largest mean length.

  Motion is measured inside `mask`, relative to the onset frame, over frames after it. When
  no frame moves by `min_motion` pixels on average there is no evidence of an apex, and the
  middle frame between the onset and the last frame is returned instead (flagged).

  Args:
    frames: (T, H, W) grayscale clip, float or uint8.
    onset: index of the onset frame.
    mask: (H, W) face-region mask (bool or weights); default face_ellipse(H, W).
    min_motion: pixels of mean motion below which the clip counts as still.
    chunk: passed to tvl1().
    head: head motion taken out of each frame's flow first (deft_jax/flow/head.py models),
      so a head turning does not read as the apex; "none" keeps the flow as measured.
    landmarks: the face's (68, 2) canonical landmarks for the head motion fit, or None.
    **params: TV-L1 settings, see TVL1Params.

  Returns:
    Apex(index, motion, fallback).
  """
  frames = np.asarray(frames)
  if frames.ndim != 3:
    raise ValueError(f"frames must have shape (T, H, W), got {frames.shape}.")
  t, h, w = frames.shape
  if not 0 <= onset < t:
    raise ValueError(f"onset must index a frame of the clip (T={t}), got {onset}.")
  weights = face_ellipse(h, w) if mask is None else np.asarray(mask, np.float64)
  if weights.shape != (h, w):
    raise ValueError(f"mask must have shape (H, W) = {(h, w)}, got {weights.shape}.")
  after = frames[onset + 1:]
  motion = np.zeros(t)
  if len(after):
    reference = np.broadcast_to(frames[onset], after.shape)
    flow = dual_tvl1.tvl1(reference, after, chunk=chunk, **params)
    if head != "none":
      flow = head_lib.remove(np.asarray(flow), head, landmarks=landmarks)
    length = np.asarray(strain.magnitude_direction(flow)[0], np.float64)
    motion[onset + 1:] = (length * weights).sum((1, 2)) / max(weights.sum(), 1e-12)
  if motion.max() < min_motion:
    return Apex((onset + t - 1) // 2, motion, True)
  return Apex(int(np.argmax(motion)), motion, False)
