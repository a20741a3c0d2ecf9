"""Hugging Face checkpoints: parity with transformers, sharded placement, bad files, export."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy
import torch
import transformers
from flax import traverse_util

from deft_jax.models import hf
from hf_models import VARIANTS, hf_checkpoint, hf_model, left_padded, torch_logits
from deft_jax.models import lora as lora_lib
from deft_jax.train import sharding

def make_mesh(shape):
  return jax.make_mesh(shape, ("data", "fsdp", "tensor"), axis_types=(jax.sharding.AxisType.Auto,) * 3)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_logits_match_transformers(tmp_path, variant):
  model, path = hf_checkpoint(tmp_path, variant)
  module, params = hf.from_pretrained(path)
  ids, mask = left_padded(np.random.default_rng(1), 3, 12)
  ours = np.asarray(module.apply({"params": params}, jnp.asarray(ids), attention_mask=jnp.asarray(mask)))
  ref = torch_logits(model, ids, mask)
  assert ours.dtype == np.float32 and ours.shape == (3, 12, 128)
  real = mask.astype(bool)
  np.testing.assert_allclose(ours[real], ref[real], rtol=0, atol=1e-4)


@pytest.mark.parametrize("scan", [True, False])
def test_sharded_checkpoint_and_mesh_placement(tmp_path, monkeypatch, scan):
  """Layers spread over several files, read in row blocks straight into each device's shard;
  scanned, each stacked leaf gathers its layers from their files."""
  monkeypatch.setattr(hf, "_CHUNK_BYTES", 512)  # many row blocks per shard
  model = hf_model("qwen2", seed=2)
  path = tmp_path / "sharded"
  model.save_pretrained(path, max_shard_size="40KB")
  assert len(set(json.load(open(path / hf.INDEX_FILE))["weight_map"].values())) > 2
  mesh = make_mesh((2, 2, 2))
  module, params = hf.from_pretrained(path, mesh=mesh, scan_layers=scan)
  flat = traverse_util.flatten_dict(params, sep="/")
  spec = lambda p: tuple(flat[p].sharding.spec)
  if scan:
    assert spec("layers/self_attn/q_proj/kernel") == (None, "fsdp", "tensor")
    assert spec("layers/self_attn/k_proj/bias") == (None, "tensor")
    assert spec("layers/mlp/down_proj/kernel") == (None, "tensor", "fsdp")
    np.testing.assert_array_equal(np.asarray(flat["layers/mlp/down_proj/kernel"][1]),
                                  model.model.layers[1].mlp.down_proj.weight.detach().numpy().T)
  else:
    assert spec("layers_0/self_attn/q_proj/kernel") == ("fsdp", "tensor")
    assert spec("layers_0/self_attn/k_proj/bias") == ("tensor",)
    assert spec("layers_1/mlp/down_proj/kernel") == ("tensor", "fsdp")
  assert spec("embed_tokens/embedding") == ("tensor", "fsdp")
  assert spec("norm/scale") == (None,)
  ids, mask = left_padded(np.random.default_rng(3), 2, 9)
  ours = jax.jit(module.apply)({"params": params}, jnp.asarray(ids), attention_mask=jnp.asarray(mask))
  real = mask.astype(bool)
  np.testing.assert_allclose(np.asarray(ours)[real], torch_logits(model, ids, mask)[real], rtol=0, atol=1e-4)


def test_rules_that_do_not_divide_are_reported_and_replicated(tmp_path):
  _, path = hf_checkpoint(tmp_path, "llama", num_key_value_heads=1, head_dim=12)
  mesh = make_mesh((1, 1, 8))
  with pytest.warns(sharding.ShardingWarning) as caught:
    _, params = hf.from_pretrained(path, mesh=mesh, rules={"heads": "tensor", "kv_heads": "tensor"})
  messages = [str(w.message) for w in caught]
  assert any("layers/self_attn/k_proj/kernel: dimension 2 of size 12" in m and "tensor" in m for m in messages)
  assert not any("q_proj" in m for m in messages)
  attn = params["layers"]["self_attn"]
  assert tuple(attn["q_proj"]["kernel"].sharding.spec) == (None, None, "tensor")  # 4 * 12 = 48 splits 8 ways
  assert tuple(attn["k_proj"]["kernel"].sharding.spec) == (None, None, None)  # 1 * 12 does not


def test_bfloat16_checkpoint_loads_as_bfloat16(tmp_path):
  model = hf_model("llama").to(torch.bfloat16)
  model.save_pretrained(tmp_path)
  module, params = hf.from_pretrained(tmp_path, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
  leaves = jax.tree.leaves(params)
  assert all(x.dtype == jnp.bfloat16 for x in leaves)
  expected = model.model.layers[1].mlp.up_proj.weight.detach().float().numpy().T
  np.testing.assert_array_equal(np.asarray(params["layers"]["mlp"]["up_proj"]["kernel"][1], np.float32), expected)
  logits = module.apply({"params": params}, jnp.ones((1, 4), jnp.int32))
  assert logits.dtype == jnp.float32


def test_key_mismatches_are_listed_in_one_error(tmp_path):
  _, path = hf_checkpoint(tmp_path, "llama")
  file = os.path.join(path, hf.SINGLE_FILE)
  with safetensors.safe_open(file, "numpy") as sf:
    tensors = {k: sf.get_tensor(k) for k in sf.keys()}
  del tensors["model.layers.1.self_attn.v_proj.weight"]
  tensors["model.layers.0.extra.weight"] = np.zeros(3, np.float32)
  tensors["model.layers.0.mlp.up_proj.weight"] = np.zeros((5, 64), np.float32)
  safetensors.numpy.save_file(tensors, file)
  with pytest.raises(hf.CheckpointError) as e:
    hf.from_pretrained(path)
  message = str(e.value)
  assert "missing: model.layers.1.self_attn.v_proj.weight" in message
  assert "unexpected: model.layers.0.extra.weight" in message
  assert "wrong shape: model.layers.0.mlp.up_proj.weight is (5, 64), model needs (128, 64)" in message


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_safetensors_error_names_the_file(tmp_path, damage):
  _, path = hf_checkpoint(tmp_path, "llama")
  file = os.path.join(path, hf.SINGLE_FILE)
  data = open(file, "rb").read()
  with open(file, "wb") as f:
    f.write(data[: len(data) // 2] if damage == "truncated" else b"\x07not safetensors" * 8)
  with pytest.raises(hf.CheckpointError, match=f"{file}: not a readable safetensors file"):
    hf.from_pretrained(path)


def test_index_pointing_at_a_missing_shard(tmp_path):
  model = hf_model("llama")
  path = tmp_path / "ckpt"
  model.save_pretrained(path, max_shard_size="40KB")
  index = json.load(open(path / hf.INDEX_FILE))
  shard = sorted(set(index["weight_map"].values()))[-1]
  os.remove(path / shard)
  with pytest.raises(hf.CheckpointError, match=f"checkpoint file missing: .*{shard}"):
    hf.from_pretrained(path)


@pytest.mark.parametrize("patch, message", [
    ({"model_type": "mistral"}, "unsupported model_type 'mistral'"),
    ({"model_type": "qwen2_moe"}, "unsupported model_type 'qwen2_moe'"),
    ({"use_sliding_window": True, "sliding_window": 8}, "sliding-window attention"),
    ({"num_experts": 4}, "mixture of experts"),
    ({"rope_parameters": {"rope_type": "yarn", "factor": 2.0, "rope_theta": 1e4}}, "rope scaling type 'yarn'"),
])
def test_unsupported_configs_name_the_feature(tmp_path, patch, message):
  _, path = hf_checkpoint(tmp_path, "qwen2")
  config = json.load(open(path / "config.json"))
  config.update(patch)
  json.dump(config, open(path / "config.json", "w"))
  with pytest.raises(ValueError, match=message):
    hf.from_pretrained(path)


def test_fresh_lora_starts_at_the_checkpoint(tmp_path):
  model, path = hf_checkpoint(tmp_path, "qwen3")
  mesh = make_mesh((1, 2, 4))
  module, params = hf.from_pretrained(path, lora=lora_lib.LoraConfig(rank=4), mesh=mesh, rng=jax.random.key(5))
  q = params["layers"]["self_attn"]["q_proj"]
  assert np.abs(np.asarray(q["lora_a"])).max() > 0 and np.abs(np.asarray(q["lora_b"])).max() == 0
  assert tuple(q["lora_a"].sharding.spec) == (None, "fsdp", None)
  ids, mask = left_padded(np.random.default_rng(4), 2, 7)
  ours = np.asarray(module.apply({"params": params}, jnp.asarray(ids), attention_mask=jnp.asarray(mask)))
  real = mask.astype(bool)
  np.testing.assert_allclose(ours[real], torch_logits(model, ids, mask)[real], rtol=0, atol=1e-4)


def test_save_pretrained_merges_lora_and_transformers_loads_it(tmp_path):
  _, path = hf_checkpoint(tmp_path, "llama_tied")
  module, params = hf.from_pretrained(path, lora=lora_lib.LoraConfig(rank=4, alpha=8.0))
  rng = np.random.default_rng(6)
  params = jax.tree_util.tree_map_with_path(
      lambda p, x: jnp.asarray(rng.normal(0, 0.2, x.shape), x.dtype) if "lora_b" in jax.tree_util.keystr(p) else x,
      params)
  ids, mask = left_padded(rng, 2, 8)
  ours = np.asarray(module.apply({"params": params}, jnp.asarray(ids), attention_mask=jnp.asarray(mask)))
  out = tmp_path / "export"
  hf.save_pretrained(module, params, out)
  reloaded = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
  assert reloaded.config.tie_word_embeddings and reloaded.config.model_type == "llama"
  real = mask.astype(bool)
  np.testing.assert_allclose(ours[real], torch_logits(reloaded, ids, mask)[real], rtol=0, atol=1e-4)




@pytest.mark.parametrize("variant", ["llama", "llama_tied"])
def test_grown_vocabulary_starts_at_the_mean_row_and_exports_as_transformers_resizes(tmp_path, variant):
  model, path = hf_checkpoint(tmp_path, variant)
  module, params = hf.from_pretrained(path, added_tokens=3)
  assert module.config.total_vocab == 131
  table = model.get_input_embeddings().weight.detach().numpy()
  np.testing.assert_allclose(np.asarray(params["embed_tokens"]["added_embedding"]),
                             np.broadcast_to(table.mean(0), (3, 64)), rtol=1e-5, atol=1e-6)
  rng = np.random.default_rng(8)
  flat = traverse_util.flatten_dict(params, sep="/")
  flat = {k: jnp.asarray(rng.normal(0, 0.2, v.shape), v.dtype) if "added_" in k else v for k, v in flat.items()}
  params = traverse_util.unflatten_dict(flat, sep="/")
  ids, mask = left_padded(rng, 2, 8, vocab=131)
  ids[:, -2:] = [128, 130]  # grown ids read and are predicted
  ours = np.asarray(module.apply({"params": params}, jnp.asarray(ids), attention_mask=jnp.asarray(mask)))
  assert ours.shape == (2, 8, 131)
  out = tmp_path / "export"
  hf.save_pretrained(module, params, out)
  reloaded = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
  assert reloaded.config.vocab_size == 131
  real = mask.astype(bool)
  np.testing.assert_allclose(ours[real], torch_logits(reloaded, ids, mask)[real], rtol=0, atol=1e-4)
  _, again = hf.from_pretrained(out)  # the grown table is now the checkpoint's own
  assert again["embed_tokens"]["embedding"].shape == (131, 64)
