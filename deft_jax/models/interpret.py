"""What a DEFT prediction rests on, as arrays (figures: deft_jax/eval/explain_plot.py).

  expert_contributions: per expert, the drop in the probability of the full model's
    predicted class when that expert's tokens leave the prompt (DeftModel(drop=...)); the
    leave-one-out reading of each expert (negative: the class got likelier without it).
  region_scores: per face region, the share of the motion expert's projected token norm: how
    much each region's token moves the LLM's input. Gradient-free and cheap; it says where the
    motion expert puts its signal, not how the LLM uses it.
"""

import jax
import jax.numpy as jnp
import numpy as np

from deft_jax.models import deft


def probabilities(model: deft.DeftModel, params, batch, drop: tuple[str, ...] = ()) -> np.ndarray:
  """(B, C) emotion probabilities, with the experts in `drop` left out."""
  logits = model.apply({"params": params}, batch, drop=drop)["emotion_logits"]
  return np.asarray(jax.nn.softmax(logits, axis=-1))


def expert_contributions(model: deft.DeftModel, params, batch) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """(full probabilities (B, C), {expert: (B,) drop in p(predicted class) without it})."""
  full = probabilities(model, params, batch)
  pred = full.argmax(-1)
  rows = np.arange(len(pred))
  out = {}
  for name in model.config.experts:
    without = probabilities(model, params, batch, drop=(name,))
    out[name] = full[rows, pred] - without[rows, pred]
  return full, out


def region_scores(model: deft.DeftModel, params, batch) -> np.ndarray:
  """(B, R) shares (summing to 1) of the motion tokens' norms, R in catalogue.REGIONS order."""
  if "motion" not in model.config.experts:
    raise ValueError("region scores need the motion expert; this model has none")
  _, aux = model.apply({"params": params}, batch, method=deft.DeftModel.encode)
  norms = jnp.linalg.norm(aux["tokens"]["motion"].astype(jnp.float32), axis=-1)
  return np.asarray(norms / jnp.maximum(norms.sum(-1, keepdims=True), 1e-9))
