"""Records carry their face's 68 landmarks, and the batch carries the regions they place, so
training, Uni-MER evidence and predict all read the same skin."""

import numpy as np

from deft_jax.data import pipeline, tokenizer as tokenizer_lib
from deft_jax.facs import catalogue, regions


def test_synthetic_records_carry_their_subjects_true_landmarks(synthetic_tiny):
  source = synthetic_tiny.as_data_source()["train"]
  record = source[0]
  assert record["landmarks"].shape == (68, 2)
  subjects = {}
  for i in range(len(source)):
    subjects.setdefault(pipeline.as_text(source[i]["subject"]), source[i]["landmarks"])
  points = np.stack(list(subjects.values()))
  # Faces differ (the generator jitters each subject's anchors), so regions must be placed per clip.
  assert np.abs(points - points[:1]).max() > 0.01
  assert np.abs(points - regions.CANONICAL_68).max() > 0.01


def test_the_pipeline_places_the_regions_of_each_record(synthetic_tiny, tmp_path):
  record = synthetic_tiny.as_data_source()["train"][0]
  tokenizer_lib.train_tokenizer(tmp_path / "tok", 256)
  tok = tokenizer_lib.load_tokenizer(tmp_path / "tok")
  example = pipeline.Preprocess(tok, "composite", 160, train=False).map_with(record, 0)
  placed = regions.region_boxes(record["landmarks"])
  np.testing.assert_allclose(example["region_boxes"], [placed[r] for r in catalogue.REGIONS], atol=1e-6)
  canonical = pipeline.region_boxes(None)
  np.testing.assert_allclose(canonical, [regions.REGION_BOXES[r] for r in catalogue.REGIONS], atol=1e-6)
  assert np.abs(example["region_boxes"] - canonical).max() > 1e-3
