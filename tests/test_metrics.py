"""Pooled MEGC metrics against scikit-learn on predictions drawn fresh in each test."""

import numpy as np
import pytest
from sklearn import metrics as skm

from deft_jax.eval import metrics


@pytest.mark.parametrize("num_classes", [3, 5, 7])
def test_uf1_uar_accuracy_match_sklearn(num_classes):
  rng = np.random.default_rng(1)
  n = int(rng.integers(20, 400))
  truth = rng.integers(0, num_classes, n)
  pred = np.where(rng.random(n) < 0.6, truth, rng.integers(0, num_classes, n))
  s = metrics.scores(metrics.confusion(truth, pred, num_classes))
  assert s["uf1"] == pytest.approx(skm.f1_score(truth, pred, average="macro"), abs=1e-12)
  assert s["uar"] == pytest.approx(skm.balanced_accuracy_score(truth, pred), abs=1e-12)
  assert s["accuracy"] == pytest.approx(skm.accuracy_score(truth, pred), abs=1e-12)
  np.testing.assert_allclose(s["f1"], skm.f1_score(truth, pred, average=None, labels=range(num_classes)))


def test_slice_with_a_missing_class_matches_sklearn():
  """Per-dataset slices may lack a class (SAMM has few surprises); means skip it as sklearn does."""
  rng = np.random.default_rng(2)
  truth = rng.integers(0, 2, 60)  # class 2 never true
  pred = np.where(rng.random(60) < 0.7, truth, rng.integers(0, 3, 60))
  s = metrics.scores(metrics.confusion(truth, pred, 3))
  assert s["uf1"] == pytest.approx(skm.f1_score(truth, pred, average="macro"), abs=1e-12)
  with np.errstate(all="ignore"), pytest.warns(UserWarning):
    expected = skm.balanced_accuracy_score(truth, pred)
  assert s["uar"] == pytest.approx(expected, abs=1e-12)


def test_pooled_is_not_the_mean_of_folds():
  truth = np.array([0, 0, 1, 1, 2, 2, 0, 1])
  pred = np.array([0, 1, 1, 1, 2, 0, 0, 2])
  folds = [slice(0, 4), slice(4, 8)]
  pooled = metrics.scores(metrics.confusion(truth, pred, 3))["uf1"]
  per_fold = np.mean([metrics.scores(metrics.confusion(truth[f], pred[f], 3))["uf1"] for f in folds])
  assert pooled == pytest.approx(skm.f1_score(truth, pred, average="macro"))
  assert abs(pooled - per_fold) > 1e-3


def test_bad_labels_are_named():
  with pytest.raises(ValueError, match="outside"):
    metrics.confusion([0, 3], [0, 1], 3)
  with pytest.raises(ValueError, match="shape"):
    metrics.confusion([0, 1], [0], 3)
