"""What each expert contributes, and where the motion expert puts its signal.

An expert's contribution to a clip is the drop in the probability of the class the full model
predicts when the expert's tokens (and markers) are removed (DeftModel(drop=...)); negative
means the class got likelier without it. Over a labelled set, the scores of the model without
it are the inference-time ablation. A region's score is its share of the motion expert's
projected token norm: how much each region's token moves the LLM's input. Gradient-free and
cheap, it says where the motion expert puts its signal, not how the LLM uses it.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from deft_jax.eval import metrics
from deft_jax.facs import catalogue
from deft_jax.models import deft


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


def region_scores(model: deft.DeftModel, params, batch) -> np.ndarray:
  """(B, R) shares (summing to 1) of the motion tokens' norms, R in catalogue.REGIONS order."""
  if "motion" not in model.config.experts:
    raise ValueError("region scores need the motion expert; this model has none")
  return np.asarray(_region_shares(model, params, batch))


@functools.partial(jax.jit, static_argnames=("model",))
def _region_shares(model: deft.DeftModel, params, batch):
  """One compiled program (applied op by op, the encoders took ~15 s of dispatch on CPU)."""
  _, aux = model.apply({"params": params}, batch, method=deft.DeftModel.encode)
  # The region tokens come first (the summary tokens, when configured, follow them).
  regional = aux["tokens"]["motion"][:, :len(catalogue.REGIONS)]
  norms = jnp.linalg.norm(regional.astype(jnp.float32), axis=-1)
  return norms / jnp.maximum(norms.sum(-1, keepdims=True), 1e-9)
