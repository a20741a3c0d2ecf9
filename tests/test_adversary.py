"""The domain adversary (models/adversary.py, folds.adversary): the gradient reversal, the head
inside DEFT, its targets, and the settings it refuses; the contrast term beside it."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from configs import composite_flow
from deft_jax import cli
from deft_jax.data import tokenizer as tokenizer_lib
from deft_jax.facs import catalogue
from deft_jax.models import adversary, deft
from deft_jax.train import fold_data, loso, losses, state as state_lib


def test_reverse_gradient_is_the_identity_forward_and_negates_the_gradient():
  rng = np.random.default_rng()
  x, w = jnp.asarray(rng.normal(size=(5, 7))), jnp.asarray(rng.normal(size=(5, 7)))
  np.testing.assert_array_equal(adversary.reverse_gradient(x), x)
  f = lambda fn: jax.grad(lambda z: jnp.sum(jnp.sin(fn(z)) * w))(x)
  np.testing.assert_allclose(f(adversary.reverse_gradient), -f(lambda z: z), rtol=1e-6)


@pytest.fixture(scope="module")
def model_and_batch(tmp_path_factory):
  cfg = cli.load_config(["--config", "configs/composite_flow.py:tiny"])
  tok_dir = tmp_path_factory.mktemp("tok")
  tokenizer_lib.train_tokenizer(tok_dir, cfg.data.tokenizer_vocab)
  model = state_lib.make_model(cfg, tokenizer_lib.load_tokenizer(tok_dir))
  model = model.clone(config=dataclasses.replace(model.config, adversary_classes=5))
  rng = np.random.default_rng()
  batch = deft.init_batch(model.config, 4, 8)
  batch = {**batch, "flow": jnp.asarray(rng.normal(size=batch["flow"].shape), jnp.float32),
           "text_ids": jnp.asarray(rng.integers(4, 50, batch["text_ids"].shape), jnp.int32),
           "prompt_len": jnp.full((4,), 5, jnp.int32), "loss_mask": jnp.ones(batch["text_ids"].shape, jnp.float32),
           "label": jnp.asarray(rng.integers(0, 3, 4), jnp.int32), "aus": jnp.zeros((4, catalogue.NUM_AUS)),
           "adversary_label": jnp.asarray(rng.integers(0, 5, 4), jnp.int32)}
  return model, batch


def test_the_adversary_learns_to_name_the_domain_and_the_features_beneath_it_unlearn(model_and_batch, monkeypatch):
  """The adversary term's gradient is the plain classifier's on the head itself and its negation
  on everything beneath it (experts, projector, LLM); the emotion head does not read it."""
  model, batch = model_and_batch
  params = nn.meta.unbox(model.init(jax.random.key(1), batch)["params"])
  assert set(params["adversary"]) == {"fc1", "fc2"}

  def adversary_grads():
    def term(p):
      out = model.apply({"params": p}, batch)
      return losses.hybrid_loss(out, batch, {"adversary": 1.0})[1]["adversary"]
    return traverse_util.flatten_dict(jax.jit(jax.grad(term))(params))

  reversed_ = adversary_grads()
  monkeypatch.setattr(adversary, "reverse_gradient", lambda x: x)
  plain = adversary_grads()
  below = [k for k in plain if k[0] != "adversary" and np.abs(plain[k]).max() > 0]
  assert any(k[0] == "motion" for k in below) and any(k[0] == "llm" for k in below)
  for k, g in plain.items():
    sign = 1.0 if k[0] == "adversary" else -1.0
    np.testing.assert_allclose(reversed_[k], sign * g, rtol=1e-5, atol=1e-8, err_msg="/".join(k))
  assert not np.any(reversed_[("emotion_head", "kernel")])


def test_hybrid_loss_adds_the_adversary_term_at_its_weight_and_contrasts_the_heads_feature(model_and_batch):
  model, batch = model_and_batch
  params = nn.meta.unbox(model.init(jax.random.key(2), batch)["params"])
  out = jax.jit(model.apply)({"params": params}, batch)
  assert out["adversary_logits"].shape == (4, 5)
  weights = {"lm": 0.1, "emotion": 1.0}
  base, terms = losses.hybrid_loss(out, batch, weights)
  expected = -jax.nn.log_softmax(out["adversary_logits"])[jnp.arange(4), batch["adversary_label"]].mean()
  np.testing.assert_allclose(terms["adversary"], expected, rtol=1e-5)
  with_term, _ = losses.hybrid_loss(out, batch, {**weights, "adversary": 0.3})
  np.testing.assert_allclose(with_term - base, 0.3 * expected, rtol=1e-4)
  # The contrast term (losses.supervised_contrastive_loss) reads the feature the emotion head reads.
  head = params["emotion_head"]
  np.testing.assert_allclose(out["feature"] @ head["kernel"] + head["bias"], out["emotion_logits"], rtol=1e-4, atol=1e-5)
  _, terms = losses.hybrid_loss(out, batch, {**weights, "contrast": 0.1})
  np.testing.assert_allclose(terms["contrast"], losses.supervised_contrastive_loss(out["feature"], batch["label"]))


def test_adversary_targets_index_subjects_or_corpora():
  clips = fold_data.Clips({}, ("s2", "s1", "s2", "s3"), ("a", "b", "c", "d"), ("samm", "casme2", "samm", "smic"))
  assert loso.adversary_labels("subject", clips)[0] == 3
  np.testing.assert_array_equal(loso.adversary_labels("subject", clips)[1], [1, 0, 1, 2])
  n, corpus = loso.adversary_labels("corpus", clips)
  assert n == 3 and corpus[0] == corpus[2] != corpus[1]


@pytest.mark.parametrize("override, message", [
    (dict(adversary="identity"), r"folds.adversary must be one of \('none', 'subject', 'corpus'\), got 'identity'"),
    (dict(adversary="subject", pretrain_epochs=2), r"folds.adversary .* cannot also pretrain"),
])
def test_bad_adversary_settings_are_refused_before_a_workdir_is_made(tmp_path, override, message):
  cfg = composite_flow.get_config("tiny")
  cfg.folds.adversary = override["adversary"]
  cfg.folds.pretrain.epochs = override.get("pretrain_epochs", 0)
  cfg.data.manual_dir = str(tmp_path / "no_such_folder")
  with pytest.raises(ValueError, match=message):
    loso.run(cfg, str(tmp_path / "work"))
  assert not (tmp_path / "work").exists()
