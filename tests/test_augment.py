"""Photometric augmentation: one transform per clip, nothing but the frames changes, off by default."""

import numpy as np
import pytest

from deft_jax.data import augment, pipeline, synthetic, tokenizer as tokenizer_lib


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
  path = tmp_path_factory.mktemp("tok") / "tokenizer"
  tokenizer_lib.train_tokenizer(path, 1024)
  return tokenizer_lib.load_tokenizer(path)


def _record():
  rng = np.random.default_rng(1)
  clip = synthetic.make_clip(synthetic.make_subject("casme2_s00", rng), "happiness", synthetic.SOURCES["casme2"],
                             rng, num_frames=6, size=32)
  return {**clip, "subject": "casme2_s00", "clip_id": "c0"}


def test_one_gain_for_every_frame_and_channel():
  frames = np.random.default_rng(2).integers(20, 120, (5, 8, 8, 3)).astype(np.uint8)
  out = augment.Photometric(brightness=0.5)(frames, np.random.default_rng(3))
  assert out.shape == frames.shape and out.dtype == np.uint8
  gain = out.sum() / frames.sum(dtype=np.float64)
  assert np.abs(out - gain * frames).max() <= 1.0 and abs(gain - 1) > 1e-3  # one gain, up to rounding
  coloured = augment.Photometric(colour=0.5)(frames, np.random.default_rng(4))
  gains = coloured.sum((0, 1, 2)) / frames.sum((0, 1, 2), dtype=np.float64)
  assert np.abs(coloured - gains * frames).max() <= 1.0 and np.ptp(gains) > 1e-3
  grey = augment.Photometric(grayscale=1.0)(frames, np.random.default_rng(5))
  assert (np.ptp(grey.astype(int), axis=-1) <= 1).all()


def test_contrast_keeps_the_clip_mean_and_scales_the_spread():
  frames = np.random.default_rng(6).integers(60, 200, (4, 16, 16, 3)).astype(np.uint8)
  out = augment.Photometric(contrast=0.5)(frames, np.random.default_rng(7)).astype(np.float64)
  assert out.mean() == pytest.approx(frames.mean(), abs=0.6)
  assert out.std() / frames.std() == pytest.approx(np.abs(out - out.mean()).mean() / np.abs(frames - frames.mean()).mean(),
                                                   rel=0.02)


def test_only_training_frames_change_and_off_is_exactly_off(tok):
  record = _record()
  plain = pipeline.Preprocess(tok, "composite", 104, train=True)
  jittered = pipeline.Preprocess(tok, "composite", 104, train=True,
                                 photometric=augment.Photometric(brightness=0.3, contrast=0.3, colour=0.2))
  seed = int(np.random.default_rng(8).integers(1 << 30))
  a, b = plain.random_map(record, np.random.default_rng(seed)), jittered.random_map(record, np.random.default_rng(seed))
  assert not np.array_equal(a["clip"], b["clip"]) and not np.array_equal(a["keyframes"], b["keyframes"])
  for key in a:
    if key not in ("clip", "keyframes"):
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)  # flow, AUs, label and text as they were
  # Evaluation never jitters, and a disabled augmentation draws nothing from the stream.
  np.testing.assert_array_equal(jittered.map_with(record, 0)["clip"], record["frames"])
  rng = np.random.default_rng(seed)
  augment.Photometric()(record["frames"], rng)
  assert rng.random() == np.random.default_rng(seed).random()


@pytest.mark.parametrize("field,value", [("brightness", -0.1), ("contrast", 1.5), ("grayscale", 2.0)])
def test_out_of_range_strength_is_named(field, value):
  with pytest.raises(ValueError, match=f"data.augment.{field}"):
    augment.Photometric(**{field: value})
