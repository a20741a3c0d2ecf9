"""MEGC2019 metrics from one confusion matrix pooled over all folds.

F1_c = 2TP / (2TP + FP + FN), UF1 = mean_c F1_c, UAR = mean_c TP_c / N_c. Per-dataset
figures are slices of the pooled predictions, never separate trainings, and never an
average of per-fold scores (a different, non-standard metric).
"""

import numpy as np


def confusion(truth, pred, num_classes: int) -> np.ndarray:
  """(true, predicted) counts."""
  truth, pred = np.asarray(truth, np.int64), np.asarray(pred, np.int64)
  if truth.shape != pred.shape:
    raise ValueError(f"truth {truth.shape} and predictions {pred.shape} differ in shape")
  bad = (truth < 0) | (truth >= num_classes) | (pred < 0) | (pred >= num_classes)
  if bad.any():
    raise ValueError(f"labels outside [0, {num_classes}): truth {truth[bad][:5]}, predictions {pred[bad][:5]}")
  return np.bincount(truth * num_classes + pred, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def scores(cm: np.ndarray) -> dict:
  """UF1, UAR, accuracy and per-class F1 / recall of a confusion matrix.

  Classes absent from both truth and predictions are left out of the means (F1 and recall
  are undefined for them), as the MEGC2019 per-dataset slices require.
  """
  cm = np.asarray(cm, np.float64)
  tp = np.diag(cm)
  support, predicted = cm.sum(1), cm.sum(0)
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
