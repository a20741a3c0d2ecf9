"""The record every clip builder emits, synthetic or real.

Only `tfds.features.Tensor` and `Text`/scalars are used: Video and Image features need
TensorFlow, which deft-jax does without.
"""

import numpy as np
import tensorflow_datasets as tfds

from deft_jax.facs import catalogue

# AU side codes in `au_side`: the subject's own side, as FACS and the datasets' sheets write it.
SIDE_NONE, SIDE_BOTH, SIDE_LEFT, SIDE_RIGHT = 0, 1, 2, 3


def clip_features(num_frames: int, size: int, extra: dict | None = None,
                  flow_size: int | None = None) -> tfds.features.FeaturesDict:
  """Features of one clip: T frames between onset and offset, onset->apex flow, labels.

  frames[onset_index] is the onset and frames[apex_index] the apex. `flow` is onset->apex
  (dx, dy) in pixels at the frame resolution, so frames[apex](x + flow(x)) ~ frames[onset](x).
  `flow_size` (default: `size`) stores flow and strain at their own size, for datasets that
  ship flow measured at another resolution than their faces (the MEGC2019 composite: 28 px
  flow beside 224 px crops); such a builder documents the flow's units.
  AU vectors follow `catalogue.AU_NUMBERS`; intensity 0 is unknown, 1..5 are FACS A..E.
  `landmarks` are the face's 68 points (dlib's order) on the onset frame in canonical
  coordinates of the crop (facs/regions.py), where its AU regions are placed; a builder that
  has none stores regions.CANONICAL_68. Only the fine `emotion` is stored: class schemes map it when the data is read
  (emotions.label), so a new scheme needs no rebuild.
  """
  t, s, n = num_frames, size, catalogue.NUM_AUS
  f = flow_size or size
  feats = {
      "frames": tfds.features.Tensor(shape=(t, s, s, 3), dtype=np.uint8),
      "onset_index": np.int32,
      "apex_index": np.int32,
      "offset_index": np.int32,
      "flow": tfds.features.Tensor(shape=(f, f, 2), dtype=np.float32),
      "strain": tfds.features.Tensor(shape=(f, f), dtype=np.float32),
      "aus": tfds.features.Tensor(shape=(n,), dtype=np.uint8),
      "au_intensity": tfds.features.Tensor(shape=(n,), dtype=np.uint8),
      "au_side": tfds.features.Tensor(shape=(n,), dtype=np.uint8),
      "au_string": tfds.features.Text(),
      "landmarks": tfds.features.Tensor(shape=(68, 2), dtype=np.float32),
      "emotion": tfds.features.Text(),
      "subject": tfds.features.Text(),
      "clip_id": tfds.features.Text(),
      "source": tfds.features.Text(),
  }
  feats.update(extra or {})
  return tfds.features.FeaturesDict(feats)

