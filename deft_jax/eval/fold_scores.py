"""Honest and optimistic scores of the fold program's per-epoch predictions.

honest:     every fold's model at the last epoch of the fixed schedule (MEGC2019 protocol), or the
            mean of its last k epochs' probabilities (a fixed snapshot ensemble, fixed beforehand);
optimistic: each fold's epoch chosen by its own test clips (the most correct predictions, the
            first such epoch), as HTNet and CausalNet score themselves. It looks at the test
            labels to choose, so it is printed beside the honest score only to show the gap.
Both pool one confusion matrix over all folds (eval.metrics.pooled).
"""

import numpy as np

from deft_jax.eval import metrics

OPTIMISTIC_NOTE = ("OPTIMISTIC: each subject's epoch chosen on that subject's test clips (HTNet protocol); "
                   "not a valid estimate, shown only beside the honest score")


def softmax(logits: np.ndarray) -> np.ndarray:
  z = np.exp(logits - logits.max(-1, keepdims=True))
  return z / z.sum(-1, keepdims=True)


PRIORS = ("none", "corpus", "all")


def prior_shift(probs: np.ndarray, idx: np.ndarray, train: np.ndarray, labels: np.ndarray, groups) -> np.ndarray:
  """probs (E, F, M, C) of the clips idx (F, M), from a model trained on class-balanced draws
  (a uniform class prior), moved by Bayes' rule to the class prior of fold f's training clips
  (train (F, N)) of the scored clip's group (its corpus, or one group for all; Saerens et al.
  2002): p(y | x) is proportional to p_balanced(y | x) prior(y). The counts get +1 (Laplace), so
  that a class missing from a group's training clips is rare, not impossible."""
  num_classes = probs.shape[-1]
  group = np.unique(np.asarray(groups), return_inverse=True)[1]  # (N,) group index
  joint = np.eye(group.max() + 1)[group][:, :, None] * np.eye(num_classes)[labels][:, None, :]  # (N, G, C)
  counts = np.einsum("fn,ngc->fgc", train.astype(np.float64), joint) + 1.0
  prior = counts / counts.sum(-1, keepdims=True)  # (F, G, C)
  shifted = probs * prior[np.arange(len(idx))[:, None], group[idx]][None]  # (F, M, C) per scored clip
  return (shifted / shifted.sum(-1, keepdims=True)).astype(probs.dtype)


def best_epochs(probs: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """(F,) epoch of each fold with the most correct predictions on its own scored clips."""
  correct = ((probs.argmax(-1) == truth[None]) & mask[None]).sum(-1)  # (E, F)
  return correct.argmax(0)


def score(probs: np.ndarray, idx: np.ndarray, mask: np.ndarray, labels: np.ndarray, datasets, num_classes: int,
          average_epochs: int = 1):
  """probs (E, F, M, C) of the clips idx (F, M) (mask: real entries) -> honest and optimistic
  pooled scores, and the honest per-clip rows (clip index, truth, prediction, probs). The honest
  prediction averages the last `average_epochs` epochs' probabilities."""
  if not 1 <= average_epochs <= len(probs):
    raise ValueError(f"folds.average_epochs={average_epochs}: needs 1..{len(probs)} (the epochs)")
  truth = labels[idx]
  datasets = np.asarray(datasets)
  last = probs[-average_epochs:].mean(0)
  honest = metrics.pooled(truth[mask], last.argmax(-1)[mask], num_classes, datasets[idx][mask])
  best = best_epochs(probs, truth, mask)
  chosen = probs[best, np.arange(probs.shape[1])]  # (F, M, C)
  optimistic = metrics.pooled(truth[mask], chosen.argmax(-1)[mask], num_classes, datasets[idx][mask])
  rows = {"index": idx[mask], "truth": truth[mask], "prediction": last.argmax(-1)[mask], "probs": last[mask]}
  return honest, optimistic, best, rows


def curve(probs: np.ndarray, idx: np.ndarray, mask: np.ndarray, labels: np.ndarray, num_classes: int) -> list:
  """Pooled UF1 and UAR after every epoch (for validation scores only: choosing a schedule on
  a test curve would be test-fold selection)."""
  truth = labels[idx][mask]
  out = []
  for p in probs:
    s = metrics.scores(metrics.confusion(truth, p.argmax(-1)[mask], num_classes))
    out.append({"uf1": round(s["uf1"], 4), "uar": round(s["uar"], 4)})
  return out
