"""LoRA: targeting, dropout, freezing, merge/unmerge, and the peft on-disk format both ways."""

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import peft
import pytest
import safetensors.numpy
import torch
from flax import linen as nn
from flax import traverse_util

from deft_jax.models import hf
from deft_jax.models import llm
from deft_jax.models import lora as lora_lib
from deft_jax.train import state as state_lib
from hf_models import hf_checkpoint, left_padded, torch_logits

CONFIG = llm.LlmConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2)


def init(lora: lora_lib.LoraConfig, seed: int):
  """A tiny model whose LoRA B factors are random (B = 0 would hide every bug)."""
  module = llm.DecoderLM(CONFIG, lora=lora)
  params = nn.meta.unbox(jax.jit(module.init)(jax.random.key(seed), jnp.zeros((1, 4), jnp.int32))["params"])
  return module, randomize_lora_b(params, np.random.default_rng(seed))


def randomize_lora_b(params, rng):
  flat = traverse_util.flatten_dict(params, sep="/")
  flat = {k: jnp.asarray(rng.normal(0, 0.3, v.shape), v.dtype) if k.endswith("lora_b") else v
          for k, v in flat.items()}
  return traverse_util.unflatten_dict(flat, sep="/")


def paths(params):
  return list(traverse_util.flatten_dict(params, sep="/"))


def test_targets_select_modules_and_names_separate_lora_from_base():
  _, params = init(lora_lib.LoraConfig(rank=2, targets=r".*self_attn/(q_proj|v_proj)$|lm_head"), 0)
  lora_paths = [p for p in paths(params) if "lora" in p]
  assert sorted({p.rsplit("/", 1)[0] for p in lora_paths}) == [  # the scanned stack: one leaf, 2 layers
      "layers/self_attn/q_proj", "layers/self_attn/v_proj", "lm_head"]
  assert params["layers"]["self_attn"]["q_proj"]["lora_a"].shape == (2, 64, 2)
  assert all("lora_" in p for p in lora_paths)
  base, adapter = lora_lib.split(params)
  assert not any("lora" in p for p in paths(base)) and len(paths(adapter)) == len(lora_paths)
  assert params["lm_head"]["lora_a"].shape == (64, 2) and params["lm_head"]["lora_b"].shape == (2, 128)


def test_dropout_uses_the_dropout_rng_only_when_training():
  module, params = init(lora_lib.LoraConfig(rank=4, dropout=0.5), 1)
  ids = jnp.asarray(np.random.default_rng(1).integers(0, 128, (2, 6)))
  apply = lambda **kw: np.asarray(module.apply({"params": params}, ids, **kw))
  eval_logits = apply()
  train_a = apply(deterministic=False, rngs={"dropout": jax.random.key(0)})
  train_b = apply(deterministic=False, rngs={"dropout": jax.random.key(1)})
  assert np.abs(train_a - eval_logits).max() > 1e-3 and np.abs(train_a - train_b).max() > 1e-3
  np.testing.assert_array_equal(apply(rngs={"dropout": jax.random.key(0)}), eval_logits)


def test_freezing_keeps_base_weights_bit_exact():
  module, params = init(lora_lib.LoraConfig(rank=4), 2)
  tx = lora_lib.freeze(optax.adamw(1e-2, weight_decay=0.1))
  opt_state = tx.init(params)
  ids = jnp.asarray(np.random.default_rng(2).integers(0, 128, (2, 8)))

  @jax.jit
  def step(params, opt_state):
    def loss_fn(p):
      logits = module.apply({"params": p}, ids[:, :-1])
      return optax.softmax_cross_entropy_with_integer_labels(logits, ids[:, 1:]).mean()
    grads = jax.grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  new = params
  for _ in range(3):
    new, opt_state = step(new, opt_state)
  before, after = traverse_util.flatten_dict(params, sep="/"), traverse_util.flatten_dict(new, sep="/")
  for k in before:
    if "lora_" in k:
      assert np.abs(np.asarray(after[k]) - np.asarray(before[k])).max() > 1e-4, k
    else:
      np.testing.assert_array_equal(np.asarray(after[k]), np.asarray(before[k]), err_msg=k)
  # Adam moments exist only for the adapter.
  state_size = sum(x.size for x in jax.tree.leaves(opt_state))
  adapter_size = sum(x.size for x in jax.tree.leaves(lora_lib.split(params)[1]))
  assert state_size < 2 * adapter_size + 10


def test_merge_matches_adapter_and_unmerge_restores():
  lora = lora_lib.LoraConfig(rank=4, alpha=4.0)
  module, params = init(lora, 3)
  ids, mask = left_padded(np.random.default_rng(3), 3, 9)
  with_adapter = module.apply({"params": params}, jnp.asarray(ids), attention_mask=jnp.asarray(mask))
  merged = lora_lib.merge(params, lora)
  assert not any("lora" in p for p in paths(merged))
  plain = llm.DecoderLM(CONFIG).apply({"params": merged}, jnp.asarray(ids), attention_mask=jnp.asarray(mask))
  np.testing.assert_allclose(np.asarray(plain), np.asarray(with_adapter), rtol=0, atol=1e-5)
  restored = lora_lib.unmerge(merged, lora_lib.split(params)[1], lora)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-6),
               restored, params)
  kernel = "layers/self_attn/q_proj/kernel"
  assert np.abs(np.asarray(traverse_util.flatten_dict(merged, sep="/")[kernel])
                - np.asarray(traverse_util.flatten_dict(params, sep="/")[kernel])).max() > 1e-3


def test_exported_adapter_loads_in_peft(tmp_path):
  model, path = hf_checkpoint(tmp_path, "qwen2", seed=4)
  lora = lora_lib.LoraConfig(rank=4, alpha=12.0, targets=r".*(q_proj|k_proj|o_proj|up_proj|down_proj)$")
  module, params = hf.from_pretrained(path, lora=lora, rng=jax.random.key(4))
  params = randomize_lora_b(params, np.random.default_rng(4))
  lora_lib.save_peft(tmp_path / "adapter", params, lora)
  peft_model = peft.PeftModel.from_pretrained(model, tmp_path / "adapter").eval()
  n_adapted = sum(1 for name, _ in peft_model.named_modules() if name.endswith(".lora_A"))
  assert n_adapted == 2 * 5
  ids, mask = left_padded(np.random.default_rng(5), 2, 10)
  ours = np.asarray(module.apply({"params": params}, jnp.asarray(ids), attention_mask=jnp.asarray(mask)))
  real = mask.astype(bool)
  np.testing.assert_allclose(ours[real], torch_logits(peft_model, ids, mask)[real], rtol=0, atol=1e-4)


@pytest.mark.parametrize("scan", [True, False])
def test_lora_gradients_match_peft(tmp_path, scan):
  """The adapter's gradients (LoRA's backward is written by hand, models/lora.py low_rank) equal
  peft's autograd ones on the same weights, batch-and-sequence inputs, left padding included."""
  model, path = hf_checkpoint(tmp_path, "llama", seed=11)
  lora = lora_lib.LoraConfig(rank=4, alpha=8.0)
  module, params = hf.from_pretrained(path, lora=lora, scan_layers=scan, rng=jax.random.key(11))
  params = randomize_lora_b(params, np.random.default_rng(11))
  lora_lib.save_peft(tmp_path / "adapter", params, lora)
  peft_model = peft.PeftModel.from_pretrained(model, tmp_path / "adapter", is_trainable=True).train()
  ids, mask = left_padded(np.random.default_rng(12), 3, 9)
  targets = (mask[:, :-1] * mask[:, 1:]).astype(np.float32)

  def loss_fn(adapter, base):
    logits = module.apply({"params": state_lib.merge_params(adapter, base)}, jnp.asarray(ids),
                          attention_mask=jnp.asarray(mask))[:, :-1]
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.asarray(ids[:, 1:]))
    return (ce * targets).sum() / targets.sum()

  base, adapter = lora_lib.split(params)
  grads = jax.grad(loss_fn)(adapter, base)
  lora_lib.save_peft(tmp_path / "grads", state_lib.merge_params(grads, base), lora)  # peft's names and layout
  ours = safetensors.numpy.load_file(tmp_path / "grads" / lora_lib.ADAPTER_WEIGHTS)

  logits = peft_model(torch.tensor(ids), attention_mask=torch.tensor(mask)).logits[:, :-1]
  ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), torch.tensor(ids[:, 1:]).reshape(-1),
                                         reduction="none")
  (ce * torch.tensor(targets).reshape(-1)).sum().div(float(targets.sum())).backward()
  theirs = {n.replace(".default", ""): p.grad.numpy() for n, p in peft_model.named_parameters() if "lora_" in n}
  assert sorted(theirs) == sorted(ours) and len(ours) == 2 * 7 * 2
  for name, grad in theirs.items():
    assert np.abs(grad).max() > 1e-4, name  # a real gradient, not zeros compared with zeros
    np.testing.assert_allclose(ours[name], grad, rtol=0, atol=2e-5, err_msg=name)


@pytest.mark.parametrize("variant", ["llama", "llama_tied"])
def test_grown_rows_export_as_peft_trainable_tokens(tmp_path, variant):
  """LoRA + grown vocabulary rows -> peft adapter with trainable tokens; transformers' model,
  resized to the grown vocabulary, with it gives our logits (grown ids in and out); and back."""
  model, path = hf_checkpoint(tmp_path, variant, seed=9)
  lora = lora_lib.LoraConfig(rank=2, alpha=4.0)
  module, params = hf.from_pretrained(path, lora=lora, added_tokens=3, rng=jax.random.key(9))
  rng = np.random.default_rng(9)
  flat = traverse_util.flatten_dict(params, sep="/")
  flat = {k: jnp.asarray(rng.normal(0, 0.3, v.shape), v.dtype) if "lora_b" in k or "added_" in k else v
          for k, v in flat.items()}
  params = traverse_util.unflatten_dict(flat, sep="/")
  lora_lib.save_peft(tmp_path / "adapter", params, lora)
  config = json.load(open(tmp_path / "adapter" / lora_lib.ADAPTER_CONFIG))
  assert config["trainable_token_indices"] == {"embed_tokens": [128, 129, 130],
                                               **({} if variant == "llama_tied" else {"lm_head": [128, 129, 130]})}
  model.resize_token_embeddings(131)
  peft_model = peft.PeftModel.from_pretrained(model, tmp_path / "adapter").eval()
  ids, mask = left_padded(rng, 2, 8, vocab=131)
  ids[:, -2:] = [128, 130]
  ours = np.asarray(module.apply({"params": params}, jnp.asarray(ids), attention_mask=jnp.asarray(mask)))
  real = mask.astype(bool)
  np.testing.assert_allclose(ours[real], torch_logits(peft_model, ids, mask)[real], rtol=0, atol=1e-4)
  _, fresh = hf.from_pretrained(path, added_tokens=3)
  _, loaded = lora_lib.load_peft(tmp_path / "adapter", fresh)
  for k, v in traverse_util.flatten_dict(loaded, sep="/").items():
    np.testing.assert_allclose(np.asarray(v), np.asarray(flat[k]), rtol=0, atol=1e-6, err_msg=k)
  _, ungrown = hf.from_pretrained(path)
  with pytest.raises(ValueError, match=r"trainable tokens \[128, 129, 130\] of embed_tokens; the model's grown rows"):
    lora_lib.load_peft(tmp_path / "adapter", ungrown)


@pytest.mark.parametrize("scan", [True, False])
def test_adapter_saved_by_peft_imports(tmp_path, scan):
  model, path = hf_checkpoint(tmp_path, "qwen3", seed=6)
  _, params = hf.from_pretrained(path, scan_layers=scan)
  peft_config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "gate_proj"],
                                lora_dropout=0.0)
  peft_model = peft.get_peft_model(model, peft_config).eval()
  torch.manual_seed(6)
  with torch.no_grad():
    for name, p in peft_model.named_parameters():
      if "lora_B" in name:
        p.normal_(0, 0.3)
  peft_model.save_pretrained(tmp_path / "adapter")
  lora, params = lora_lib.load_peft(tmp_path / "adapter", params)
  assert lora.rank == 4 and lora.scale == 2.0
  assert len([p for p in paths(params) if p.endswith("lora_a")]) == (3 if scan else 2 * 3)  # stacked: 2 layers each
  module = llm.DecoderLM(llm.LlmConfig.from_hf(path), lora=lora, scan_layers=scan)
  ids, mask = left_padded(np.random.default_rng(7), 3, 8)
  ours = np.asarray(module.apply({"params": params}, jnp.asarray(ids), attention_mask=jnp.asarray(mask)))
  real = mask.astype(bool)
  np.testing.assert_allclose(ours[real], torch_logits(peft_model, ids, mask)[real], rtol=0, atol=1e-4)


def test_an_adapter_on_some_layers_only_needs_the_unscanned_model(tmp_path):
  model, path = hf_checkpoint(tmp_path, "llama", seed=8)
  peft_model = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["q_proj"], layers_to_transform=[1]))
  peft_model.save_pretrained(tmp_path / "adapter")
  _, scanned = hf.from_pretrained(path)
  with pytest.raises(ValueError, match=r"layers/self_attn/q_proj: the adapter covers 1 of its 2 layers"):
    lora_lib.load_peft(tmp_path / "adapter", scanned)
  _, params = hf.from_pretrained(path, scan_layers=False)
  lora, params = lora_lib.load_peft(tmp_path / "adapter", params)
  assert lora.targets == "^(layers_1/self_attn/q_proj)$" and "lora_a" not in params["layers_0"]["self_attn"]["q_proj"]


def test_unsupported_peft_settings_are_named(tmp_path):
  model, path = hf_checkpoint(tmp_path, "llama")
  _, params = hf.from_pretrained(path)
  peft_model = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["q_proj"], use_rslora=True))
  peft_model.save_pretrained(tmp_path / "adapter")
  with pytest.raises(ValueError, match=re.escape("unsupported peft adapter settings: use_rslora=True")):
    lora_lib.load_peft(tmp_path / "adapter", params)


def test_hf_names_round_trip():
  for path in ["layers_12/self_attn/q_proj", "lm_head", "layers_0/mlp/down_proj"]:
    assert lora_lib.flax_module_path(lora_lib.hf_module_name(path)) == path
  assert lora_lib.hf_module_name("layers_3/mlp/up_proj") == "model.layers.3.mlp.up_proj"
