"""LoRA train step (forward + backward + AdamW) of a Llama decoder: deft-jax vs transformers + peft.

Both run fp32 on this host's CPU with the same shapes and all LoRA targets; prints one JSON line
last: median step seconds of each and speedup = torch / jax. deft-jax differentiates the LoRA
leaves only (as its train step does: the frozen base is a constant, no weight gradients).
`--smollm2` sets SmolLM2-135M's shape (30 layers, width 576, 9/3 heads, MLP 1536, vocab 49152,
tied embeddings) at seq 128, batch 4.
"""

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from flax import traverse_util

from deft_jax.models import llm
from deft_jax.models import lora as lora_lib


def parser(description: str = __doc__) -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(description=description)
  p.add_argument("--layers", type=int, default=4)
  p.add_argument("--width", type=int, default=512)
  p.add_argument("--heads", type=int, default=8)
  p.add_argument("--kv_heads", type=int, default=8)
  p.add_argument("--mlp", type=int, default=1376)
  p.add_argument("--vocab", type=int, default=32000)
  p.add_argument("--seq", type=int, default=256)
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--rank", type=int, default=8)
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--warmup", type=int, default=2)
  p.add_argument("--tied", action="store_true", help="tied input embedding and LM head")
  p.add_argument("--smollm2", action="store_true", help="SmolLM2-135M's shape (overrides the shape flags)")
  p.add_argument("--unscanned", action="store_true", help="the layers as separate modules, not one nn.scan")
  p.add_argument("--devices", type=int, default=1,
                 help="split the batch over this many devices (on CPU: XLA_FLAGS=--xla_force_host_platform_device_count=N, "
                      "one device per core, as fold jobs do; XLA:CPU runs most element-wise work on one thread a device)")
  return p


def parse(p: argparse.ArgumentParser | None = None):
  a = (p or parser()).parse_args()
  if a.smollm2:
    a.layers, a.width, a.heads, a.kv_heads, a.mlp, a.vocab, a.tied, a.seq, a.batch = 30, 576, 9, 3, 1536, 49152, True, 128, 4
  return a


def config(a) -> llm.LlmConfig:
  return llm.LlmConfig(vocab_size=a.vocab, hidden_size=a.width, intermediate_size=a.mlp, num_hidden_layers=a.layers,
                       num_attention_heads=a.heads, num_key_value_heads=a.kv_heads, tie_word_embeddings=a.tied)


def timed(step, n):
  times = []
  for _ in range(n):
    start = time.perf_counter()
    step()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def lora_step(a, ids, scan_layers: bool = True, remat: str = "none"):
  """(jitted step(adapter, opt_state, base, ids), [adapter, opt_state], base): the adapter's
  gradients only, as deft-jax's train step takes them."""
  lora = lora_lib.LoraConfig(rank=a.rank, alpha=2.0 * a.rank)
  module = llm.DecoderLM(config(a), lora=lora, scan_layers=scan_layers, remat=remat)
  params = nn.meta.unbox(jax.jit(module.init)(jax.random.key(0), ids[:1, :8])["params"])
  base, adapter = lora_lib.split(params)
  tx = optax.adamw(1e-4)

  def step(adapter, opt_state, base, ids):
    def loss_fn(adapter):
      p = traverse_util.unflatten_dict({**traverse_util.flatten_dict(base), **traverse_util.flatten_dict(adapter)})
      logits = module.apply({"params": p}, ids[:, :-1])
      return optax.softmax_cross_entropy_with_integer_labels(logits, ids[:, 1:]).mean()
    loss, grads = jax.value_and_grad(loss_fn)(adapter)
    updates, opt_state = tx.update(grads, opt_state, adapter)
    return optax.apply_updates(adapter, updates), opt_state, loss

  return jax.jit(step, donate_argnums=(0, 1)), [adapter, tx.init(adapter)], base


def jax_step_seconds(a, ids):
  step, state, base = lora_step(a, ids, scan_layers=not a.unscanned)
  if a.devices > 1:
    mesh = jax.make_mesh((a.devices,), ("data",), axis_types=(jax.sharding.AxisType.Auto,),
                         devices=jax.devices()[:a.devices])
    ids = jax.device_put(ids, jax.NamedSharding(mesh, jax.P("data")))
    state[:], base = jax.device_put((state, base), jax.NamedSharding(mesh, jax.P()))

  def run():
    state[0], state[1], loss = step(state[0], state[1], base, ids)
    loss.block_until_ready()

  timed(run, a.warmup)
  return timed(run, a.steps)


def torch_step_seconds(a, ids):
  import peft
  import torch
  import transformers

  c = config(a).to_hf()
  model = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(**c))
  model = peft.get_peft_model(model, peft.LoraConfig(
      r=a.rank, lora_alpha=2 * a.rank, lora_dropout=0.0,
      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
  model.train()
  opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
  ids = torch.tensor(np.asarray(ids), dtype=torch.long)

  def run():
    loss = model(input_ids=ids[:, :-1], labels=ids[:, :-1]).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)

  timed(run, a.warmup)
  return timed(run, a.steps), torch.get_num_threads()


def main():
  a = parse()
  ids = jnp.asarray(np.random.default_rng(0).integers(0, a.vocab, (a.batch, a.seq + 1)), jnp.int32)
  ours = jax_step_seconds(a, ids)
  ref, threads = torch_step_seconds(a, ids)
  print(json.dumps({
      "benchmark": "llm_lora_step", "layers": a.layers, "width": a.width, "seq": a.seq, "batch": a.batch,
      "vocab": a.vocab, "tied": a.tied, "scanned": not a.unscanned, "rank": a.rank, "backend": jax.default_backend(), "torch_threads": threads,
      "deft_jax_step_s": round(ours, 4), "torch_peft_step_s": round(ref, 4), "speedup_vs_torch": round(ref / ours, 3),
  }))


if __name__ == "__main__":
  main()
