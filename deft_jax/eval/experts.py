"""What each expert contributes: the model's answer with that expert left out of the prefix.

An expert's contribution to a clip is the drop in the probability of the class the full model
predicts when the expert's tokens (and markers) are removed; negative means the class got
likelier without it. Over a labelled set, the scores of the model without it are the
inference-time ablation.
"""

import numpy as np

from deft_jax.eval import metrics


def drops(probs: np.ndarray, without: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Per expert, (N,) drops in the probability of the full model's predicted class."""
  pred = probs.argmax(-1)
  rows = np.arange(len(pred))
  return {name: probs[rows, pred] - p[rows, pred] for name, p in without.items()}


def summarize(probs: np.ndarray, without: dict[str, np.ndarray], truth, classes) -> dict:
  """Per expert: mean drop (overall and by true class) and UF1 / UAR without it."""
  truth = np.asarray(truth)
  out = {}
  for name, d in drops(probs, without).items():
    s = metrics.scores(metrics.confusion(truth, without[name].argmax(-1), len(classes)))
    out[name] = {
        "mean_drop": float(d.mean()) if len(d) else 0.0,
        "mean_drop_by_class": {c: float(d[truth == i].mean()) for i, c in enumerate(classes) if (truth == i).any()},
        "uf1_without": s["uf1"],
        "uar_without": s["uar"],
    }
  return out
