"""Onset->apex motion of a clip of grey face crops: apex spotting and TV-L1 flow with strain.

Shared by the corpus builders and `deft-jax predict`.
"""

import numpy as np

from deft_jax import flow as flow_lib


# Mean TV-L1 motion (pixels of the S x S crop) below which a clip counts as still. The sheet
# says a micro-expression is there, and one can be faint (synthetic clips at S = 32 peak at
# 0.04-0.17 px), so only a clip frozen to the noise floor falls back to the middle frame.
MIN_APEX_MOTION = 0.01


def spot_apex(grays: np.ndarray) -> tuple[int, bool]:
  """Position of the apex in grey crops from the onset (first) on, and whether it is a guess.

  deft_jax.flow.spot_apex: the frame whose TV-L1 flow from the onset is largest; the middle
  frame when nothing moves by MIN_APEX_MOTION (the guess). The clip is padded with onset
  frames (no motion) to a power of two, so TV-L1 compiles once per length bucket rather
  than once per clip length.
  """
  n = len(grays)
  padded = np.concatenate([grays, np.repeat(grays[:1], (1 << (n - 1).bit_length()) - n, axis=0)])
  apex = flow_lib.spot_apex(padded, min_motion=MIN_APEX_MOTION)
  return (max(1, (n - 1) // 2), True) if apex.fallback else (apex.index, False)


def onset_apex_flow(onset: np.ndarray, apex: np.ndarray):
  """Onset->apex TV-L1 flow (S, S, 2) and optical strain (S, S) of two uint8 grey crops."""
  flow = flow_lib.tvl1(onset, apex)
  return np.asarray(flow), np.asarray(flow_lib.optical_strain(flow))
