"""MEGC2019 metrics from one confusion matrix pooled over all folds.

F1_c = 2TP / (2TP + FP + FN), UF1 = mean_c F1_c, UAR = mean_c TP_c / N_c. Per-dataset
figures are slices of the pooled predictions, never separate trainings, and never an
average of per-fold scores (a different, non-standard metric).
"""

import numpy as np


def confusion(truth, pred, num_classes: int, num_predicted: int | None = None) -> np.ndarray:
  """(true, predicted) counts; `num_predicted` > num_classes leaves room for non-class answers."""
  num_predicted = num_predicted or num_classes
  truth, pred = np.asarray(truth, np.int64), np.asarray(pred, np.int64)
  if truth.shape != pred.shape:
    raise ValueError(f"truth {truth.shape} and predictions {pred.shape} differ in shape")
  bad = (truth < 0) | (truth >= num_classes) | (pred < 0) | (pred >= num_predicted)
  if bad.any():
    raise ValueError(f"labels outside [0, {num_classes}): truth {truth[bad][:5]}, predictions {pred[bad][:5]}")
  counts = np.bincount(truth * num_predicted + pred, minlength=num_classes * num_predicted)
  return counts.reshape(num_classes, num_predicted)


def scores(cm: np.ndarray) -> dict:
  """UF1, UAR, accuracy and per-class F1 / recall of a confusion matrix.

  Classes absent from both truth and predictions are left out of the means (F1 and recall
  are undefined for them), as the MEGC2019 per-dataset slices require. Columns past the
  classes (a (C, C + k) matrix) count predictions that name no class: misses, never hits.
  """
  cm = np.asarray(cm, np.float64)
  num_classes = cm.shape[0]
  tp = np.diag(cm[:, :num_classes])
  support, predicted = cm.sum(1), cm[:, :num_classes].sum(0)
  denom = 2 * tp + (predicted - tp) + (support - tp)
  present = support > 0
  f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
  recall = np.divide(tp, support, out=np.zeros_like(tp), where=present)
  used = present | (predicted > 0)
  return {
      "uf1": float(f1[used].mean()) if used.any() else 0.0,
      "uar": float(recall[present].mean()) if present.any() else 0.0,
      "accuracy": float(tp.sum() / max(cm.sum(), 1)),
      "f1": f1.tolist(),
      "recall": recall.tolist(),
      "support": support.astype(int).tolist(),
  }


def pooled(truth, pred, num_classes: int, datasets=None) -> dict:
  """Scores and confusion of all predictions, and of each dataset's slice of them.

  Returns {"full": {...}, "per_dataset": {name: {...}}} with "confusion" and "num_clips" in
  each part; per_dataset is empty when `datasets` is None.
  """
  truth, pred = np.asarray(truth), np.asarray(pred)

  def part(mask):
    cm = confusion(truth[mask], pred[mask], num_classes)
    return {**scores(cm), "confusion": cm.tolist(), "num_clips": int(mask.sum())}

  out = {"full": part(np.ones(truth.shape, bool)), "per_dataset": {}}
  if datasets is not None:
    datasets = np.asarray(datasets)
    for name in sorted(set(datasets.tolist())):
      out["per_dataset"][name] = part(datasets == name)
  return out
