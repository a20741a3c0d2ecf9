"""Photometric augmentation of a training clip: one draw per clip, the same for every frame.

Light, camera gain and colour balance change between subjects and sessions but say nothing
about the expression, so they are jittered; the geometry is left alone, because the flow was
measured on the frames as they are (a shift or a mirror would have to move the flow and swap
the sides of unilateral AUs with them). Applying one transform to the whole clip keeps the
onset->apex change intact: the motion experts see the same motion under another light.
"""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Photometric:
  """Each field is a strength; 0 switches that jitter off (all 0: the clip is returned as is)."""
  brightness: float = 0.0  # gain drawn from [1 - b, 1 + b]
  contrast: float = 0.0  # distance from the clip's mean intensity scaled by [1 - c, 1 + c]
  colour: float = 0.0  # a gain per RGB channel drawn from [1 - c, 1 + c]
  grayscale: float = 0.0  # probability of turning the clip grey (as SAMM is recorded)

  def __post_init__(self):
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if not 0.0 <= value <= 1.0:
        raise ValueError(f"data.augment.{field.name}={value!r}: expected a number in [0, 1]")

  @property
  def enabled(self) -> bool:
    return any(getattr(self, f.name) for f in dataclasses.fields(self))

  def __call__(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """frames: (T, H, W, 3) uint8 -> the same shape and dtype."""
    if not self.enabled:
      return frames
    x = frames.astype(np.float32)
    x *= rng.uniform(1 - self.brightness, 1 + self.brightness)
    mean = x.mean()
    x = mean + (x - mean) * rng.uniform(1 - self.contrast, 1 + self.contrast)
    x *= rng.uniform(1 - self.colour, 1 + self.colour, 3)
    if rng.random() < self.grayscale:
      x = np.repeat(x.mean(-1, keepdims=True), 3, -1)
    return np.clip(np.round(x), 0, 255).astype(np.uint8)
