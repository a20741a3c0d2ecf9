"""LOSO pooling: each distinct split once, and never a clip twice (issue 15, item 1)."""

import collections

import pytest

from configs import synthetic
from deft_jax.data import build
from deft_jax.train import trainer


def _cfg(train_split, test_split, holdout):
  cfg = synthetic.get_config("tiny")
  cfg.data.train_split, cfg.data.test_split = train_split, test_split
  cfg.data.holdout_subjects = holdout
  return cfg


def test_one_split_pools_each_clip_once(synthetic_tiny):
  """Real builders have one split (train_split == test_split): 'train+train' doubled every clip."""
  train = trainer.labelled(synthetic_tiny.as_data_source()["train"], "composite")
  subject = train[0].subject
  cfg = _cfg("train", "train", (subject,))
  _, _, test_info = trainer.select_records(cfg, synthetic_tiny)
  ids = [c.clip_id for c in test_info]
  assert sorted(ids) == sorted(c.clip_id for c in train if c.subject == subject)
  assert not [k for k, n in collections.Counter(ids).items() if n > 1]
  _, info = trainer.pooled_records(cfg, synthetic_tiny)
  assert len(info) == len(train)


def test_two_splits_still_pool_both(synthetic_tiny):
  sources = synthetic_tiny.as_data_source()
  _, info = trainer.pooled_records(_cfg("train", "test", ("x",)), synthetic_tiny)
  assert len(info) == sum(len(trainer.labelled(sources[s], "composite")) for s in ("train", "test"))


def test_a_doubled_pool_is_refused():
  clips = [trainer.pipeline.ClipInfo(0, "s1", "c1", "a", 0), trainer.pipeline.ClipInfo(1, "s1", "c1", "a", 0)]
  with pytest.raises(build.DatasetError, match="clip 'c1' occurs twice \\(records 0 and 1\\)"):
    trainer.check_unique_clips(clips, "ds")
