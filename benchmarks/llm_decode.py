"""Cached greedy decoding throughput: deft-jax `generate` vs transformers `generate`, same weights.

A random Llama checkpoint is written by transformers and loaded by deft-jax; prompts are
left-padded. Prints one JSON line last: new tokens/s of each (compile excluded), speedup,
whether the two produced the same tokens, and the memory-bandwidth bound: the bytes one decode
step reads (weights + the KV cache at its mean length) over the bandwidth measured in the same
run (a jitted sum over 1 GiB), and the share of that bound deft-jax reaches.
`--smollm2` sets SmolLM2-135M's shape (30 layers, width 576, 9/3 heads, MLP 1536, vocab 49152,
tied embeddings).
"""

import argparse
import json
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import torch
import transformers

from deft_jax.models import decoding
from deft_jax.models import hf

import timing


def parse():
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument("--layers", type=int, default=4)
  p.add_argument("--width", type=int, default=512)
  p.add_argument("--heads", type=int, default=8)
  p.add_argument("--kv_heads", type=int, default=2)
  p.add_argument("--mlp", type=int, default=1376)
  p.add_argument("--vocab", type=int, default=32000)
  p.add_argument("--batch", type=int, default=4)
  p.add_argument("--prompt", type=int, default=64)
  p.add_argument("--new", type=int, default=128)
  p.add_argument("--tied", action="store_true")
  p.add_argument("--smollm2", action="store_true", help="SmolLM2-135M's shape (overrides the shape flags)")
  p.add_argument("--unscanned", action="store_true", help="the LLM's layers unrolled (model.scan_layers=False)")
  p.add_argument("--devices", type=int, default=1,
                 help="split the weights over this many devices on the tensor axis (on CPU: XLA_FLAGS="
                      "--xla_force_host_platform_device_count=N, one device per core)")
  a = p.parse_args()
  if a.smollm2:
    a.layers, a.width, a.heads, a.kv_heads, a.mlp, a.vocab, a.tied = 30, 576, 9, 3, 1536, 49152, True
  return a


def bandwidth_bytes_per_s(mesh, n_bytes: int = 1 << 30) -> float:
  """Read bandwidth of this host as XLA sees it on the decode's devices: a jitted sum over n_bytes
  of float32 split over the mesh's devices, best of 3."""
  x = jax.device_put(jnp.ones((n_bytes // 4,), jnp.float32),
                     jax.NamedSharding(mesh, jax.P(("data", "fsdp", "tensor"))))
  total = jax.jit(jnp.sum)
  total(x).block_until_ready()
  return n_bytes / timing.best_of(lambda: total(x).block_until_ready(), 3)[0]


def main():
  a = parse()
  config = transformers.LlamaConfig(
      vocab_size=a.vocab, hidden_size=a.width, intermediate_size=a.mlp, num_hidden_layers=a.layers,
      num_attention_heads=a.heads, num_key_value_heads=a.kv_heads, max_position_embeddings=4096,
      tie_word_embeddings=a.tied)
  torch.manual_seed(0)
  model = transformers.LlamaForCausalLM(config).eval()
  rng = np.random.default_rng(0)
  ids = rng.integers(1, a.vocab, (a.batch, a.prompt))
  mask = np.ones_like(ids)
  for row in range(1, a.batch):
    mask[row, : rng.integers(1, a.prompt // 2)] = 0
  ids = ids * mask

  with tempfile.TemporaryDirectory() as path:
    model.save_pretrained(path)
    mesh = jax.make_mesh((1, 1, a.devices), ("data", "fsdp", "tensor"), devices=jax.devices()[:a.devices],
                         axis_types=(jax.sharding.AxisType.Auto,) * 3)
    module, params = hf.from_pretrained(path, scan_layers=not a.unscanned, mesh=mesh)

  def ours():
    out = decoding.generate(module, params, input_ids=jnp.asarray(ids), attention_mask=jnp.asarray(mask),
                            max_new_tokens=a.new)
    return np.asarray(out.block_until_ready())

  def reference():
    with torch.no_grad():
      out = model.generate(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), max_new_tokens=a.new,
                           min_new_tokens=a.new, do_sample=False, eos_token_id=None, pad_token_id=0)
    return out[:, -a.new:].numpy()

  ours()  # compile
  ours_s, ours_tokens = timing.best_of(ours)
  ref_s, ref_tokens = timing.best_of(reference)
  total = a.batch * a.new
  weight_bytes = sum(x.nbytes for x in jax.tree.leaves(params))
  head_dim = a.width // a.heads
  kv_bytes = 2 * a.layers * a.batch * (a.prompt + a.new / 2) * a.kv_heads * head_dim * 4
  step_bytes = weight_bytes + kv_bytes  # one decode step reads every weight and the cache once
  bandwidth = bandwidth_bytes_per_s(mesh)
  bound = a.batch * bandwidth / step_bytes  # tokens/s if a step cost only its reads
  print(json.dumps({
      "benchmark": "llm_decode", "layers": a.layers, "width": a.width, "vocab": a.vocab, "batch": a.batch,
      "prompt": a.prompt, "new_tokens": a.new, "scan_layers": not a.unscanned, "devices": a.devices, "backend": jax.default_backend(), "torch_threads": torch.get_num_threads(),
      "deft_jax_tokens_per_s": round(total / ours_s, 1), "transformers_tokens_per_s": round(total / ref_s, 1),
      "speedup_vs_transformers": round(ref_s / ours_s, 3), "same_tokens": bool((ours_tokens == ref_tokens).all()),
      "bytes_per_step": int(step_bytes), "bandwidth_GBps": round(bandwidth / 1e9, 2),
      "bandwidth_bound_tokens_per_s": round(bound, 1), "share_of_bound": round(total / ours_s / bound, 3),
  }))


if __name__ == "__main__":
  main()
