"""The hybrid discriminative-generative objective of DEFT-LLM.

LM cross-entropy on the answer tokens, emotion cross-entropy from the classifier head, and
AU binary cross-entropy from the motion expert; each weighted in config (0 turns it off).
"""

import jax.numpy as jnp
import optax


def lm_loss(logits, targets, mask):
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  return jnp.sum(ce * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def hybrid_loss(outputs, batch, weights):
  """Weighted total and each term (for logging)."""
  terms = {
      "lm": lm_loss(outputs["lm_logits"], batch["text_ids"], batch["loss_mask"]),
      "emotion": optax.softmax_cross_entropy_with_integer_labels(
          outputs["emotion_logits"], batch["label"]).mean(),
  }
  if outputs["au_logits"] is not None:
    terms["au"] = optax.sigmoid_binary_cross_entropy(outputs["au_logits"], batch["aus"]).mean()
  total = sum(weights[k] * v for k, v in terms.items() if weights[k])
  return total, terms
