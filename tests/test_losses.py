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
