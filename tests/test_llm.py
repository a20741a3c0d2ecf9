"""DecoderLM on its own: config parsing, logical names, padding, dtypes, remat, scanned layers."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import transformers
from flax import traverse_util

from deft_jax.models import decoding, layer_paths, llm
from deft_jax.models import lora as lora_lib

LOGICAL_NAMES = {"vocab", "embed", "mlp", "heads", "kv_heads", "head_dim", "norm", "lora_rank", "layers"}
SMALL = dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2)
LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 16}
ALL_LINEAR = r".*(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$|lm_head"


def init(config, seed, **kw):
  module = llm.DecoderLM(config, **kw)
  return module, nn.meta.unbox(jax.jit(module.init)(jax.random.key(seed), jnp.zeros((1, 4), jnp.int32))["params"])


def test_from_hf_reads_v4_and_v5_rope_fields_alike():
  v4 = {"model_type": "llama", **SMALL, "rope_theta": 5e5, "rope_scaling": {**LLAMA3, "type": "llama3"},
        "eos_token_id": [1, 2]}
  v4["rope_scaling"].pop("rope_type")
  v5 = {"model_type": "llama", **SMALL, "rope_parameters": {**LLAMA3, "rope_theta": 5e5}, "eos_token_id": [1, 2]}
  a, b = llm.LlmConfig.from_hf(v4), llm.LlmConfig.from_hf(v5)
  assert a == b and a.rope_theta == 5e5 and a.rope_scaling == LLAMA3 and a.head_dim == 16
  assert llm.LlmConfig.from_hf(a.to_hf()) == a and hash(a) == hash(b)
  hf_config = transformers.AutoConfig.for_model(**a.to_hf())
  assert hf_config.rope_parameters["rope_type"] == "llama3" and hf_config.num_key_value_heads == 2


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_key_value_heads=3), "not a multiple of num_key_value_heads=3"),
    (dict(rope_scaling={"rope_type": "dynamic", "factor": 2.0}), "unsupported rope scaling type 'dynamic'"),
    (dict(rope_scaling={"rope_type": "llama3", "factor": 2.0}), "llama3' needs low_freq_factor"),
    (dict(model_type="gemma"), "unsupported model_type 'gemma'"),
])
def test_config_validation(kwargs, message):
  with pytest.raises(ValueError, match=message):
    llm.LlmConfig(**{**SMALL, **kwargs})


def test_from_hf_names_missing_fields_and_unsupported_features():
  with pytest.raises(ValueError, match="lacks required fields: intermediate_size"):
    llm.LlmConfig.from_hf({"model_type": "qwen3", **{k: v for k, v in SMALL.items() if k != "intermediate_size"}})
  with pytest.raises(ValueError, match="hidden_act='gelu'.*mlp_bias=True"):
    llm.LlmConfig.from_hf({"model_type": "llama", **SMALL, "hidden_act": "gelu", "mlp_bias": True})


@pytest.mark.parametrize("scan", [True, False])
def test_every_parameter_has_logical_names(scan):
  config = llm.LlmConfig(model_type="qwen3", **SMALL)
  module = llm.DecoderLM(config, lora=lora_lib.LoraConfig(rank=2, targets=".*"), scan_layers=scan)
  flat = traverse_util.flatten_dict(llm.abstract_params(module), sep="/")
  for path, boxed in flat.items():
    assert isinstance(boxed, nn.LogicallyPartitioned), path
    assert len(boxed.names) == boxed.value.ndim and set(boxed.names) <= LOGICAL_NAMES, (path, boxed.names)
  if scan:  # one stacked leaf per layer parameter, the layer axis first
    assert flat["layers/self_attn/k_proj/kernel"].names == ("layers", "embed", "kv_heads")
    assert flat["layers/self_attn/k_proj/kernel"].value.shape == (2, 64, 32)
    assert flat["layers/self_attn/q_norm/scale"].names == ("layers", "head_dim")
    assert not any(p.startswith("layers_") for p in flat)
  else:
    assert flat["layers_1/self_attn/k_proj/kernel"].names == ("embed", "kv_heads")
    assert flat["layers_1/self_attn/q_norm/scale"].names == ("head_dim",)
  assert flat["lm_head/lora_b"].names == ("lora_rank", "vocab")


def test_llama3_rope_rescales_only_low_frequencies():
  plain = llm.rope_inv_freq(llm.LlmConfig(**SMALL, rope_theta=5e5))
  scaled = llm.rope_inv_freq(llm.LlmConfig(**SMALL, rope_theta=5e5, rope_scaling=LLAMA3))
  wavelen = 2 * np.pi / plain
  assert np.array_equal(scaled[wavelen < 4], plain[wavelen < 4])  # above high_freq: unchanged
  np.testing.assert_allclose(scaled[wavelen > 16], plain[wavelen > 16] / 8, rtol=1e-6)  # below low_freq: / factor


@pytest.mark.parametrize("side", ["left", "right"])
def test_padding_does_not_change_real_token_logits(side):
  rng = np.random.default_rng(10)
  module, params = init(llm.LlmConfig(model_type="qwen2", **SMALL), 10)
  ids = rng.integers(1, 128, (1, 7))
  pad = np.zeros((1, 3), np.int64)
  padded = np.concatenate([pad, ids] if side == "left" else [ids, pad], axis=1)
  mask = np.concatenate([pad, np.ones_like(ids)] if side == "left" else [np.ones_like(ids), pad], axis=1)
  apply = jax.jit(lambda ids, mask: module.apply({"params": params}, ids, attention_mask=mask))
  full = apply(jnp.asarray(ids), jnp.ones(ids.shape, jnp.int32))
  with_pad = apply(jnp.asarray(padded), jnp.asarray(mask))
  real = slice(3, None) if side == "left" else slice(0, 7)
  np.testing.assert_allclose(np.asarray(with_pad)[:, real], np.asarray(full), rtol=0, atol=1e-5)


def test_inputs_embeds_and_return_hidden():
  module, params = init(llm.LlmConfig(**SMALL, tie_word_embeddings=True), 11)
  ids = jnp.asarray(np.random.default_rng(11).integers(0, 128, (2, 5)))

  @jax.jit
  def run(ids):
    embeds = module.apply({"params": params}, ids, method="embed")
    by_embeds = module.apply({"params": params}, inputs_embeds=embeds, return_hidden=True)
    return embeds, by_embeds, module.apply({"params": params}, ids)

  embeds, (logits, hidden), by_ids = run(ids)
  assert embeds.shape == (2, 5, 64) and hidden.shape == (2, 5, 64)
  np.testing.assert_array_equal(np.asarray(logits), np.asarray(by_ids))
  np.testing.assert_allclose(np.asarray(logits), np.asarray(hidden @ params["embed_tokens"]["embedding"].T),
                             rtol=0, atol=1e-5)
  with pytest.raises(ValueError, match="exactly one of input_ids and inputs_embeds"):
    module.apply({"params": params}, ids, inputs_embeds=embeds)


def test_bfloat16_compute_with_float32_params():
  config = llm.LlmConfig(model_type="qwen3", **SMALL)
  module32, params = init(config, 12)
  module16 = llm.DecoderLM(config, dtype=jnp.bfloat16)
  ids = jnp.asarray(np.random.default_rng(12).integers(0, 128, (2, 6)))
  ref = np.asarray(jax.jit(module32.apply)({"params": params}, ids))

  def loss(p):
    logits = module16.apply({"params": p}, ids)
    return jnp.mean(logits**2), logits

  (_, logits), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
  assert logits.dtype == jnp.float32 and all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))
  assert np.abs(np.asarray(logits) - ref).max() < 0.02 * np.abs(ref).max()
  assert np.abs(np.asarray(logits) - ref).max() > 0  # really computed in bf16


@pytest.mark.parametrize("scan, policy", [(True, "full"), (True, "dots"), (False, "full")])
def test_remat_matches_and_checkpoints(scan, policy):
  config = llm.LlmConfig(**{**SMALL, "num_hidden_layers": 2})
  lora = lora_lib.LoraConfig(rank=2)
  plain, params = init(config, 13, lora=lora, scan_layers=scan)
  remat = llm.DecoderLM(config, lora=lora, remat=policy, scan_layers=scan)
  ids = jnp.asarray(np.random.default_rng(13).integers(0, 128, (2, 6)))
  grad_fn = lambda m: jax.grad(lambda p: jnp.mean(m.apply({"params": p}, ids) ** 2))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
               jax.jit(grad_fn(plain))(params), jax.jit(grad_fn(remat))(params))
  jaxpr = str(jax.make_jaxpr(grad_fn(remat))(params))
  assert "remat" in jaxpr or "checkpoint" in jaxpr
  with pytest.raises(ValueError, match="unknown policy 'most'"):
    llm.DecoderLM(config, remat="most").init(jax.random.key(0), ids)


@pytest.mark.parametrize("model_type", ["llama", "qwen3"])
def test_scanned_layers_equal_the_unscanned_stack(model_type):
  """The scanned model on stacked weights computes what the per-layer model does on the same
  weights: logits, gradients (LoRA and base) and cached greedy decoding."""
  config = llm.LlmConfig(model_type=model_type, **{**SMALL, "num_hidden_layers": 3})
  lora = lora_lib.LoraConfig(rank=2)
  scanned, params = init(config, 14, lora=lora)
  rng = np.random.default_rng(14)
  params = jax.tree.map(lambda x: x + 0.05 * rng.normal(size=x.shape).astype(x.dtype), params)  # LoRA B != 0
  unscanned = llm.DecoderLM(config, lora=lora, scan_layers=False)
  per_layer = traverse_util.unflatten_dict(
      layer_paths.unstack(traverse_util.flatten_dict(params, sep="/")), sep="/")
  assert jax.tree.structure(per_layer) == jax.tree.structure(init(config, 0, lora=lora, scan_layers=False)[1])
  ids = jnp.asarray(rng.integers(1, 128, (2, 7)))
  mask = jnp.asarray(np.array([[0, 0, 1, 1, 1, 1, 1], [1] * 7]))
  loss = lambda m: jax.value_and_grad(lambda p: jnp.mean(m.apply({"params": p}, ids, attention_mask=mask) ** 2))
  (a, grads_a), (b, grads_b) = jax.jit(loss(scanned))(params), jax.jit(loss(unscanned))(per_layer)
  np.testing.assert_allclose(a, b, rtol=1e-5)
  flat_b = traverse_util.flatten_dict(grads_b, sep="/")
  for path, g in layer_paths.unstack(traverse_util.flatten_dict(grads_a, sep="/")).items():
    np.testing.assert_allclose(g, flat_b[path], rtol=1e-4, atol=1e-6, err_msg=path)
  out = [decoding.generate(m, p, input_ids=ids, attention_mask=mask, max_new_tokens=5)
         for m, p in ((scanned, params), (unscanned, per_layer))]
  np.testing.assert_array_equal(np.asarray(out[0]), np.asarray(out[1]))
  cache = llm.init_cache(config, 2, 8)
  with pytest.raises(ValueError, match="decode runs the layers unrolled"):
    scanned.apply({"params": params}, jnp.zeros((2, 1, 64)), jnp.zeros((2, 1), jnp.int32), jnp.ones((2, 8), bool),
                  cache, 0, method="decode")


@pytest.mark.parametrize("model_type", ["llama", "qwen2", "qwen3"])
def test_fused_projections_decode_what_the_separate_adapted_ones_do(model_type):
  """decoding.generate's model (adapters merged, q/k/v and gate/up one matmul each) on
  fuse_projections' params: the decode logits of the separate projections with their LoRA
  branches, prefill and a cached step; qwen2 has q/k/v biases, qwen3 q/k norms."""
  config = llm.LlmConfig(model_type=model_type, **SMALL)
  lora = lora_lib.LoraConfig(rank=2, targets=ALL_LINEAR)
  separate, params = init(config, 15, lora=lora, scan_layers=False)
  rng = np.random.default_rng(15)
  params = jax.tree.map(lambda x: x + 0.05 * rng.normal(size=x.shape).astype(x.dtype), params)  # LoRA B, biases != 0
  ids = jnp.asarray(rng.integers(1, 128, (2, 6)))
  kv_valid = jnp.asarray(np.array([[0, 0, 1, 1, 1, 1, 1], [1] * 7], bool))
  positions = llm.default_positions(kv_valid)

  @functools.partial(jax.jit, static_argnums=0)
  def decode(module, p):
    x = module.apply({"params": p}, ids, method="embed")
    hidden, cache = module.apply({"params": p}, x, positions[:, :6], kv_valid, llm.init_cache(config, 2, 7), 0,
                                 method="decode")
    step, _ = module.apply({"params": p}, x[:, -1:], positions[:, 6:], kv_valid, cache, 6, method="decode")
    return module.apply({"params": p}, jnp.concatenate([hidden, step], axis=1), method="logits")

  want = np.asarray(decode(separate, params))
  fused = np.asarray(decode(llm.DecoderLM(config, scan_layers=False, fused_projections=True),
                            llm.fuse_projections(params, lora)))
  base = np.asarray(decode(llm.DecoderLM(config, scan_layers=False), lora_lib.split(params)[0]))
  assert np.abs(want - base).max() > 1e-2  # the adapters matter, so merging them is tested
  np.testing.assert_allclose(fused, want, rtol=0, atol=1e-5)
  with pytest.raises(ValueError, match="fused_projections runs merged weights"):
    llm.DecoderLM(config, lora=lora, fused_projections=True).apply({"params": params}, ids)


@pytest.mark.parametrize("scan", [True, False])
def test_fuse_projections_gives_the_fused_models_params(scan):
  config = llm.LlmConfig(model_type="qwen3", attention_bias=True, **SMALL)  # q/k/v biases and q/k norms
  lora = lora_lib.LoraConfig(rank=2)
  _, params = init(config, 16, lora=lora, scan_layers=scan)
  params = jax.tree.map(lambda x: x + 0.05 * np.random.default_rng(16).normal(size=x.shape).astype(x.dtype), params)
  fused = traverse_util.flatten_dict(llm.fuse_projections(params, lora), sep="/")
  want = traverse_util.flatten_dict(
      nn.meta.unbox(llm.abstract_params(llm.DecoderLM(config, scan_layers=scan, fused_projections=True))), sep="/")
  assert {k: v.shape for k, v in fused.items()} == {k: v.shape for k, v in want.items()}
  layer = "layers" if scan else "layers_1"
  assert fused[f"{layer}/self_attn/qkv_proj/kernel"].shape[-2:] == (64, (4 + 2 * 2) * 16)
  assert fused[f"{layer}/self_attn/qkv_proj/bias"].shape[-1] == 128
  assert fused[f"{layer}/mlp/gate_up_proj/kernel"].shape[-2:] == (64, 2 * 128)
  merged = traverse_util.flatten_dict(lora_lib.merge(params, lora), sep="/")
  np.testing.assert_array_equal(fused[f"{layer}/self_attn/qkv_proj/kernel"][..., 64:96],
                                merged[f"{layer}/self_attn/k_proj/kernel"])
  np.testing.assert_array_equal(fused[f"{layer}/self_attn/qkv_proj/bias"][..., 96:],
                                merged[f"{layer}/self_attn/v_proj/bias"])
  np.testing.assert_array_equal(fused[f"{layer}/mlp/gate_up_proj/kernel"][..., 128:],
                                merged[f"{layer}/mlp/up_proj/kernel"])
  with pytest.raises(ValueError, match="params hold LoRA leaves"):
    llm.fuse_projections(params)
