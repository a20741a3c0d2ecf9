"""The hybrid objective: the decorrelation term's properties and how weights switch terms."""

import jax
import jax.numpy as jnp
import numpy as np

from deft_jax.train import losses


def _features(rng, b=16, d=8):
  return jnp.asarray(rng.normal(size=(b, d)), jnp.float32)


def test_decorrelation_is_zero_for_orthogonal_features():
  rng = np.random.default_rng(1)
  a, b = _features(rng), _features(rng)
  zeros = jnp.zeros_like(a)
  pooled = {"structure": jnp.concatenate([a, zeros], -1), "motion": jnp.concatenate([zeros, b], -1)}
  assert float(losses.decorrelation_loss(pooled)) < 1e-10


def test_decorrelation_is_one_for_copies_and_ignores_shared_offsets():
  rng = np.random.default_rng(2)
  a = _features(rng)
  offset = jnp.asarray(rng.normal(size=(1, 8)) * 10, jnp.float32)  # what every clip shares
  loss = losses.decorrelation_loss({"structure": a, "texture": -3.0 * a + offset})
  np.testing.assert_allclose(float(loss), 1.0, rtol=1e-5)
  independent = losses.decorrelation_loss({"structure": a, "texture": _features(rng)})
  assert 0.0 < float(independent) < 0.5  # random directions in 8-D: E cos^2 = 1/8


def test_decorrelation_averages_pairs_and_needs_two_experts():
  rng = np.random.default_rng(3)
  a = _features(rng)
  zeros = jnp.zeros_like(a)
  b = jnp.concatenate([zeros, _features(rng)], -1)
  a = jnp.concatenate([a, zeros], -1)
  # Pairs (a, a') = 1, (a, b) = 0, (a', b) = 0 -> mean 1/3.
  np.testing.assert_allclose(float(losses.decorrelation_loss({"s": a, "t": 2 * a, "m": b})), 1 / 3, rtol=1e-5)
  assert float(losses.decorrelation_loss({"s": a})) == 0.0


def test_hybrid_loss_weights_and_gradients():
  rng = np.random.default_rng(4)
  batch = {"text_ids": jnp.asarray(rng.integers(0, 10, (4, 6))), "loss_mask": jnp.ones((4, 6)),
           "label": jnp.asarray([0, 1, 2, 0]), "aus": jnp.asarray(rng.integers(0, 2, (4, 17)), jnp.float32)}

  def outputs(pooled_scale):
    a = _features(rng, 4, 8)
    return {"lm_logits": jnp.zeros((4, 6, 10)), "emotion_logits": jnp.zeros((4, 3)), "au_logits": jnp.zeros((4, 17)),
            "pooled": {"structure": pooled_scale * a, "motion": a}}

  out = outputs(1.0)
  weights = {"lm": 1.0, "emotion": 1.0, "au": 0.5, "decorrelation": 0.0}
  total, terms = losses.hybrid_loss(out, batch, weights)
  assert set(terms) == {"lm", "emotion", "au", "decorrelation"}
  np.testing.assert_allclose(float(total), float(terms["lm"] + terms["emotion"] + 0.5 * terms["au"]), rtol=1e-6)
  total_on, _ = losses.hybrid_loss(out, batch, {**weights, "decorrelation": 2.0})
  np.testing.assert_allclose(float(total_on - total), 2.0 * float(terms["decorrelation"]), rtol=1e-5)
  grad = jax.grad(lambda s: losses.hybrid_loss(outputs(s), batch, {"decorrelation": 1.0})[0])(1.0)
  assert np.isfinite(float(grad))


def _supcon_reference(features, labels, temperature):
  """Khosla et al. 2020, eq. 2, anchor by anchor (numpy)."""
  z = features / np.linalg.norm(features, axis=1, keepdims=True)
  losses_ = []
  for i in range(len(z)):
    others = [a for a in range(len(z)) if a != i]
    positives = [p for p in others if labels[p] == labels[i]]
    if not positives:
      continue
    logits = np.array([z[i] @ z[a] / temperature for a in others])
    log_norm = np.log(np.sum(np.exp(logits - logits.max()))) + logits.max()
    losses_.append(-np.mean([z[i] @ z[p] / temperature - log_norm for p in positives]))
  return np.mean(losses_) if losses_ else 0.0


def test_supervised_contrastive_loss_matches_the_papers_formula_on_fresh_inputs():
  rng = np.random.default_rng()
  for temperature in (0.1, 0.5):
    features = rng.normal(size=(12, 6)) * rng.uniform(0.5, 3.0, size=(12, 1))  # scale must not matter
    labels = rng.integers(0, 3, size=12)
    labels[0] = 3  # an anchor with no positive: left out of the mean
    got = losses.supervised_contrastive_loss(jnp.asarray(features, jnp.float32), jnp.asarray(labels), temperature)
    np.testing.assert_allclose(float(got), _supcon_reference(features, labels, temperature), rtol=1e-4)
  assert float(losses.supervised_contrastive_loss(jnp.ones((3, 4)), jnp.arange(3))) == 0.0


def test_supervised_contrastive_loss_is_lower_when_classes_cluster():
  rng = np.random.default_rng(4)
  labels = np.repeat(np.arange(3), 5)
  centres = rng.normal(size=(3, 8)) * 5
  clustered = centres[labels] + rng.normal(size=(15, 8)) * 0.1
  scattered = rng.normal(size=(15, 8))
  loss = lambda f: float(losses.supervised_contrastive_loss(jnp.asarray(f, jnp.float32), jnp.asarray(labels)))
  assert loss(clustered) < loss(scattered)


def test_contrast_term_is_computed_and_enters_the_total_only_with_its_weight():
  rng = np.random.default_rng(5)
  b, n, v = 6, 4, 11
  outputs = {"lm_logits": jnp.asarray(rng.normal(size=(b, n, v)), jnp.float32),
             "emotion_logits": jnp.asarray(rng.normal(size=(b, 3)), jnp.float32), "au_logits": None,
             "feature": jnp.asarray(rng.normal(size=(b, 5)), jnp.float32)}
  batch = {"text_ids": jnp.asarray(rng.integers(0, v, size=(b, n))), "loss_mask": jnp.ones((b, n)),
           "label": jnp.asarray([0, 0, 1, 1, 2, 2])}
  off, terms_off = losses.hybrid_loss(outputs, batch, {"emotion": 1.0})
  on, terms = losses.hybrid_loss(outputs, batch, {"emotion": 1.0, "contrast": 0.3})
  assert "contrast" not in terms_off  # not even computed without its weight
  np.testing.assert_allclose(float(off), float(terms_off["emotion"]), rtol=1e-6)
  np.testing.assert_allclose(float(on - off), 0.3 * float(terms["contrast"]), rtol=1e-5)
  np.testing.assert_allclose(float(terms["contrast"]),
                             _supcon_reference(np.asarray(outputs["feature"]), np.asarray(batch["label"]), 0.1), rtol=1e-4)
