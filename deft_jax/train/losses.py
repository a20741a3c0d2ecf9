"""The hybrid discriminative-generative objective of DEFT-LLM.

  lm:            cross-entropy of the answer tokens only (loss_mask covers the answer and EOS);
  emotion:       cross-entropy of the classifier head on the last instruction token (against
                 mixed or smoothed targets where the fold program asks: emotion_loss);
  au:            binary cross-entropy of the motion expert's AU head;
  decorrelation: keeps the three experts' pooled features apart (below);
  adversary:     cross-entropy of the domain adversary naming each clip's subject or corpus
                 (models/adversary.py; its gradient reversal makes the features beneath it
                 ascend this term while the adversary descends it);
  contrast:      supervised contrastive loss on the feature the emotion head reads (below).
Each is weighted by config.loss.<term>; a weight of 0 (or a missing one) leaves the term out of
the total, though it is still computed and logged; except contrast, computed only with a weight,
since it compares every clip of the batch with every other (an all-gather over a sharded batch).
"""

import itertools

import jax
import jax.numpy as jnp
import optax


def lm_loss(logits, targets, mask, num_tokens=None):
  """Mean over answer tokens; `num_tokens` (default: this batch's) lets micro-batches share one."""
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  return jnp.sum(ce * mask) / jnp.maximum(jnp.sum(mask) if num_tokens is None else num_tokens, 1.0)


def emotion_loss(logits, batch, smoothing: float = 0.0):
  """Mean cross-entropy of the classifier head against each clip's target: its label, mixed with
  `mix_label` by `mix_weight` where the batch was mixed (folds.Augment.mixup), then smoothed."""
  if not smoothing and "mix_weight" not in batch:
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
  targets = jax.nn.one_hot(batch["label"], logits.shape[-1])
  if "mix_weight" in batch:
    w = batch["mix_weight"][:, None]
    targets = w * targets + (1 - w) * jax.nn.one_hot(batch["mix_label"], logits.shape[-1])
  targets = optax.smooth_labels(targets, smoothing) if smoothing else targets
  return optax.softmax_cross_entropy(logits, targets).mean()


def decorrelation_loss(pooled: dict, eps: float = 1e-6):
  """Mean squared cosine similarity of batch-centred pooled features, over expert pairs.

  For experts a, b with pooled features z_a, z_b (B, D) in the LLM's space, each centred on
  its batch mean, the term is mean_i cos(z_a[i], z_b[i])^2, averaged over pairs: 0 when the
  experts move their tokens along orthogonal directions, 1 when one copies the other (up to
  scale and sign). A per-sample form of the soft subspace orthogonality of Domain Separation
  Networks (Bousmalis et al., NeurIPS 2016); centring removes what every clip shares, so only
  how the experts *vary* across clips is kept apart. 0 with fewer than two experts.
  """
  names = sorted(pooled)
  if len(names) < 2:
    return jnp.zeros((), jnp.float32)

  def unit(z):
    z = z.astype(jnp.float32)
    z = z - z.mean(axis=0, keepdims=True)
    return z / jnp.sqrt(jnp.sum(z * z, axis=-1, keepdims=True) + eps)

  units = {n: unit(pooled[n]) for n in names}
  pairs = [jnp.mean(jnp.sum(units[a] * units[b], axis=-1) ** 2) for a, b in itertools.combinations(names, 2)]
  return sum(pairs) / len(pairs)


def supervised_contrastive_loss(features, labels, temperature: float = 0.1):
  """Pulls clips of one emotion together and pushes the others apart, on the unit sphere.

  SupCon (Khosla et al., NeurIPS 2020, eq. 2 "L_out"), applied to the classifier's own feature
  beside its cross-entropy as Gunel et al. (ICLR 2021) do when fine-tuning a language model: for
  each anchor i with at least one other clip of its label, -mean over those positives p of
  log softmax_{a != i}(z_i . z_a / temperature)[p], z the L2-normalised features; averaged over
  such anchors (0 when no clip of the batch has a positive).
  """
  z = features.astype(jnp.float32)
  z = z / jnp.sqrt(jnp.sum(z * z, axis=-1, keepdims=True) + 1e-12)
  n = z.shape[0]
  others = ~jnp.eye(n, dtype=bool)
  sim = jnp.where(others, z @ z.T / temperature, -jnp.inf)
  log_prob = jax.nn.log_softmax(sim, axis=-1)
  positive = (labels[:, None] == labels[None, :]) & others
  count = positive.sum(axis=-1)
  per_anchor = -jnp.sum(jnp.where(positive, log_prob, 0.0), axis=-1) / jnp.maximum(count, 1)
  has = count > 0
  return jnp.sum(jnp.where(has, per_anchor, 0.0)) / jnp.maximum(has.sum(), 1)


def hybrid_loss(outputs, batch, weights, lm_tokens=None, smoothing: float = 0.0):
  """Weighted total and each term (for logging); `lm_tokens` as lm_loss's `num_tokens`,
  `smoothing` as emotion_loss's."""
  terms = {
      "lm": lm_loss(outputs["lm_logits"], batch["text_ids"], batch["loss_mask"], lm_tokens),
      "emotion": emotion_loss(outputs["emotion_logits"], batch, smoothing),
  }
  if outputs["au_logits"] is not None:
    terms["au"] = optax.sigmoid_binary_cross_entropy(outputs["au_logits"], batch["aus"]).mean()
  if len(outputs.get("pooled", {})) > 1:
    terms["decorrelation"] = decorrelation_loss(outputs["pooled"])
  if outputs.get("adversary_logits") is not None:
    terms["adversary"] = optax.softmax_cross_entropy_with_integer_labels(outputs["adversary_logits"],
                                                                         batch["adversary_label"]).mean()
  if weights.get("contrast", 0.0) and outputs.get("feature") is not None:
    terms["contrast"] = supervised_contrastive_loss(outputs["feature"], batch["label"])
  total = sum(weights.get(k, 0.0) * v for k, v in terms.items() if weights.get(k, 0.0))
  return total, terms
