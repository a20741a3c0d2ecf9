"""Choosing clips: split pooling, LOSO folds, schemes at read time (deft_jax/data/selection.py)."""

import collections

import pytest

from deft_jax import cli
from deft_jax.data import build, pipeline, selection


def _cfg(*overrides):
  return cli.load_config(["--config", "configs/synthetic.py:tiny", *overrides])


def test_one_split_named_twice_is_pooled_once(synthetic_tiny):
  """Real corpora have one split; a LOSO config naming it as train and test split must not see
  (and count) every clip twice."""
  train_only = len(synthetic_tiny.as_data_source()["train"])
  cfg = _cfg("--config.data.test_split=train")
  assert selection.pooled_splits(cfg) == "train"
  source, info = selection.pooled_records(cfg, synthetic_tiny)
  assert len(source) == train_only
  subject = info[0].subject
  cfg = _cfg("--config.data.test_split=train", f"--config.data.holdout_subjects=('{subject}',)")
  train, test, test_info = selection.select_records(cfg, synthetic_tiny)
  keys = [(c.subject, c.clip_id) for c in test_info]
  assert len(keys) == len(set(keys)) == sum(c.subject == subject for c in info)
  assert len(train) + len(test) == len(info)


def test_loso_pools_both_splits_and_holds_out_each_subject(synthetic_tiny):
  cfg = _cfg()
  subjects = selection.loso_subjects(cfg, synthetic_tiny)
  sources = synthetic_tiny.as_data_source()
  split_subjects = {pipeline.index_source(sources[s], "composite")[0].subject for s in ("train", "test")}
  assert split_subjects <= set(subjects)
  held = subjects[-1]
  _, _, test_info = selection.select_records(
      _cfg(f"--config.data.holdout_subjects=('{held}',)"), synthetic_tiny)
  assert {c.subject for c in test_info} == {held}


def test_a_clip_listed_twice_is_refused():
  clip = pipeline.ClipInfo(0, "sub01", "EP01", "casme2", 1)
  other = pipeline.ClipInfo(1, "sub01", "EP01", "samm", 1)  # same names, another dataset: distinct
  selection.check_unique([clip, other], "here")
  with pytest.raises(build.DatasetError, match="casme2/sub01/EP01 \\(2 times\\)"):
    selection.check_unique([clip, other, clip], "here")


def test_schemes_apply_when_the_data_is_read(synthetic_tiny):
  source = synthetic_tiny.as_data_source()["train"]
  record = source[0]
  assert "labels" not in record
  for scheme in ("composite", "casme3-7", "samm-5"):
    counts = collections.Counter(c.label for c in pipeline.index_source(source, scheme))
    assert sum(counts.values()) == len(source)
  assert pipeline.record_label({"emotion": b"disgust"}, "composite") == 0
  assert pipeline.record_label({"emotion": "disgust"}, "casme2-5") == 1
  assert pipeline.record_label({"emotion": "fear"}, "casme2-5") == -1
