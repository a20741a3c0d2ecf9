"""Cached decoding: greedy parity with transformers generate, stops, prefixes, sampling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import traverse_util

from deft_jax.models import decoding
from deft_jax.models import hf
from deft_jax.models import lora as lora_lib
from hf_models import VARIANTS, hf_checkpoint, left_padded

NEW = 32


def torch_greedy(model, ids=None, mask=None, embeds=None):
  with torch.no_grad():
    out = model.generate(
        input_ids=None if ids is None else torch.tensor(ids), attention_mask=torch.tensor(mask),
        inputs_embeds=None if embeds is None else torch.tensor(np.asarray(embeds)),
        max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False, eos_token_id=None, pad_token_id=0)
  return out.numpy()[:, -NEW:]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_greedy_matches_transformers_with_left_padding(tmp_path, variant):
  model, path = hf_checkpoint(tmp_path, variant)
  module, params = hf.from_pretrained(path)
  ids, mask = left_padded(np.random.default_rng(20), 3, 10)  # row 0 unpadded, rows 1-2 left-padded
  ours = decoding.generate(module, params, input_ids=jnp.asarray(ids), attention_mask=jnp.asarray(mask),
                           max_new_tokens=NEW)
  assert ours.shape == (3, NEW)
  np.testing.assert_array_equal(np.asarray(ours), torch_greedy(model, ids, mask))


def test_greedy_matches_transformers_without_padding(tmp_path):
  model, path = hf_checkpoint(tmp_path, "llama", seed=1)
  module, params = hf.from_pretrained(path)
  ids = np.random.default_rng(21).integers(0, 128, (2, 7))
  mask = np.ones_like(ids)
  ours = decoding.generate(module, params, input_ids=jnp.asarray(ids), attention_mask=jnp.asarray(mask),
                           max_new_tokens=NEW)
  np.testing.assert_array_equal(np.asarray(ours), torch_greedy(model, ids, mask))


def test_prefix_embeddings_in_front_of_text(tmp_path):
  model, path = hf_checkpoint(tmp_path, "qwen3", seed=2)
  module, params = hf.from_pretrained(path)
  rng = np.random.default_rng(22)
  prefix = rng.normal(0, 1, (3, 4, 64)).astype(np.float32)  # e.g. projected expert tokens
  ids, text_mask = left_padded(rng, 3, 6)
  ours = decoding.generate(module, params, inputs_embeds=jnp.asarray(prefix), input_ids=jnp.asarray(ids),
                           attention_mask=jnp.asarray(text_mask), max_new_tokens=NEW)
  with torch.no_grad():
    text = model.get_input_embeddings()(torch.tensor(ids)).numpy()
  mask = np.concatenate([np.ones((3, 4), np.int64), text_mask], axis=1)
  ref = torch_greedy(model, mask=mask, embeds=np.concatenate([prefix, text], axis=1))
  np.testing.assert_array_equal(np.asarray(ours), ref)


def test_stop_tokens_end_rows_with_padding(tmp_path):
  _, path = hf_checkpoint(tmp_path, "qwen2", seed=3)
  module, params = hf.from_pretrained(path)
  ids, mask = left_padded(np.random.default_rng(23), 3, 8)
  kw = dict(input_ids=jnp.asarray(ids), attention_mask=jnp.asarray(mask), max_new_tokens=16)
  free = np.asarray(decoding.generate(module, params, **kw))
  stops = (int(free[0, 2]), int(free[1, 4]))
  stopped = np.asarray(decoding.generate(module, params, **kw, stop_tokens=stops, pad_token_id=-1))
  for row in range(3):
    hits = np.flatnonzero(np.isin(free[row], stops))
    end = hits[0] + 1 if hits.size else 16
    np.testing.assert_array_equal(stopped[row, :end], free[row, :end])
    assert (stopped[row, end:] == -1).all()
  assert (stopped == -1).any()


def test_sample_respects_top_k_and_top_p():
  logits = jnp.log(jnp.asarray([[0.05, 0.5, 0.15, 0.3]] * 4000))
  draw = lambda seed, **kw: np.asarray(decoding.sample(logits, jax.random.key(seed), **kw))
  assert set(np.unique(draw(0, temperature=1.0, top_k=2, top_p=1.0))) == {1, 3}
  assert set(np.unique(draw(1, temperature=1.0, top_k=0, top_p=0.7))) == {1, 3}  # 0.5 < 0.7 <= 0.8
  assert set(np.unique(draw(2, temperature=1.0, top_k=0, top_p=0.85))) == {1, 2, 3}
  free = draw(3, temperature=1.0, top_k=0, top_p=1.0)
  assert abs((free == 0).mean() - 0.05) < 0.02 and set(np.unique(free)) == {0, 1, 2, 3}
  assert (draw(4, temperature=0.0, top_k=0, top_p=1.0) == 1).all()


def test_sampled_generation_is_reproducible_and_jitted(tmp_path):
  _, path = hf_checkpoint(tmp_path, "llama", seed=4)
  module, params = hf.from_pretrained(path)
  ids, mask = left_padded(np.random.default_rng(24), 2, 6)
  kw = dict(input_ids=jnp.asarray(ids), attention_mask=jnp.asarray(mask), max_new_tokens=12, temperature=0.8,
            top_k=20, top_p=0.95)
  a = decoding.generate(module, params, rng=jax.random.key(0), **kw)
  b = decoding.generate(module, params, rng=jax.random.key(0), **kw)
  c = decoding.generate(module, params, rng=jax.random.key(1), **kw)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert (np.asarray(a) != np.asarray(c)).any()
  greedy = decoding.generate(module, params, **{**kw, "temperature": 0.0})
  top1 = decoding.generate(module, params, rng=jax.random.key(2), **{**kw, "top_k": 1})
  np.testing.assert_array_equal(np.asarray(top1), np.asarray(greedy))
  # One trace serves every call with the same static settings: the token loop is not in Python.
  jaxpr = str(jax.make_jaxpr(lambda p: decoding.generate(module, p, rng=jax.random.key(0), **kw))(params))
  assert jaxpr.count("while[") == 1
  with pytest.raises(ValueError, match="needs rng"):
    decoding.generate(module, params, **kw)


def test_right_padding_gives_the_same_tokens_as_left_padding(tmp_path):
  _, path = hf_checkpoint(tmp_path, "qwen3", seed=5)
  module, params = hf.from_pretrained(path)
  ids, left_mask = left_padded(np.random.default_rng(25), 3, 8)
  right_ids, right_mask = np.zeros_like(ids), np.zeros_like(left_mask)
  for row in range(3):
    real = ids[row][left_mask[row] == 1]
    right_ids[row, : real.size], right_mask[row, : real.size] = real, 1
  run = lambda i, m: np.asarray(decoding.generate(module, params, input_ids=jnp.asarray(i),
                                                  attention_mask=jnp.asarray(m), max_new_tokens=12))
  np.testing.assert_array_equal(run(right_ids, right_mask), run(ids, left_mask))


@pytest.mark.parametrize("variant", ["llama", "qwen2", "qwen3"])
def test_generate_with_lora_picks_the_full_forwards_greedy_tokens(tmp_path, variant):
  """generate (adapters merged, q/k/v and gate/up fused, layers split, KV cache) picks the tokens
  a greedy loop over the full forward of the scanned model's separate adapted projections picks."""
  _, path = hf_checkpoint(tmp_path, variant, seed=6)
  lora = lora_lib.LoraConfig(rank=2, alpha=4.0)  # all seven projections
  module, params = hf.from_pretrained(path, lora=lora, rng=jax.random.key(6))
  rng = np.random.default_rng(26)
  params = traverse_util.unflatten_dict({k: jnp.asarray(rng.normal(0, 0.3, v.shape), v.dtype) if k.endswith("lora_b")
                                         else v for k, v in traverse_util.flatten_dict(params, sep="/").items()}, sep="/")
  ids, mask = left_padded(rng, 3, 8)
  new = 12
  ours = np.asarray(decoding.generate(module, params, input_ids=jnp.asarray(ids), attention_mask=jnp.asarray(mask),
                                      max_new_tokens=new))
  # The reference grows the prompt into right padding: one shape, one compile.
  buf = np.concatenate([ids, np.zeros((3, new), ids.dtype)], axis=1)
  buf_mask = np.concatenate([mask, np.zeros((3, new), mask.dtype)], axis=1)
  forward = jax.jit(lambda i, m: module.apply({"params": params}, i, attention_mask=m))
  for step in range(new):
    logits = np.asarray(forward(jnp.asarray(buf), jnp.asarray(buf_mask)))
    buf[:, 8 + step], buf_mask[:, 8 + step] = logits[:, 8 + step - 1].argmax(-1), 1
  np.testing.assert_array_equal(ours, buf[:, 8:])
  base_module, base_params = hf.from_pretrained(path)
  base = np.asarray(decoding.generate(base_module, base_params, input_ids=jnp.asarray(ids),
                                      attention_mask=jnp.asarray(mask), max_new_tokens=new))
  assert (base != ours).any()  # the adapters change the tokens, so merging them is tested


def test_generate_fuses_only_whole_full_precision_weights(tmp_path):
  """Fused on one device in float32; not with adapters over a bf16 base (merging would round
  them) nor with the weights split over devices (a fused q/k/v would cut across the split)."""
  _, path = hf_checkpoint(tmp_path, "llama", seed=7)
  module, params = hf.from_pretrained(path)
  assert decoding._fusable(module, params)  # pylint: disable=protected-access
  lora = lora_lib.LoraConfig(rank=2, alpha=4.0)
  adapted, adapted_params = hf.from_pretrained(path, lora=lora, rng=jax.random.key(7))
  assert decoding._fusable(adapted, adapted_params)  # pylint: disable=protected-access
  narrow = jax.tree.map(lambda x: x.astype(jnp.bfloat16) if x.ndim == 2 else x, adapted_params)
  assert not decoding._fusable(adapted, narrow)  # pylint: disable=protected-access
  assert decoding._fusable(module, jax.tree.map(lambda x: x.astype(jnp.bfloat16), params))  # nothing to merge
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:2]), ("tensor",))
  split = jax.tree.map(lambda x: jax.device_put(x, jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec(*([None] * (x.ndim - 1) + ["tensor"]))) if x.shape[-1] % 2 == 0 else x), params)
  assert not decoding._fusable(module, split)  # pylint: disable=protected-access
  ids, mask = left_padded(np.random.default_rng(27), 2, 6)
  run = lambda p: np.asarray(decoding.generate(module, p, input_ids=jnp.asarray(ids), attention_mask=jnp.asarray(mask),
                                               max_new_tokens=8))
  np.testing.assert_array_equal(run(split), run(params))
