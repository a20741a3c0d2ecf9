"""Training throughput (examples/s) of the full DEFT model on 8 fake CPU devices, per mesh.

The jitted train step of configs/synthetic.py (three experts, projectors, LLM + LoRA, heads,
AdamW) on one device, then on 8 devices laid out data-parallel, fully sharded (fsdp) and
tensor-parallel, at the same global batch. Fake CPU devices share the host's cores, so this
measures sharding overhead, not scaling. Prints one JSON line last: examples/s and step time of
each mesh and its ratio to the one-device run.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

if "jax" not in sys.modules:
  os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""),
                                      "--xla_force_host_platform_device_count=8"]).strip()
  os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import numpy as np  # noqa: E402

from deft_jax import cli  # noqa: E402
from deft_jax.data import schema  # noqa: E402
from deft_jax.data import tokenizer as tokenizer_lib  # noqa: E402
from deft_jax.models import deft  # noqa: E402
from deft_jax.train import sharding, state as state_lib, step as step_lib  # noqa: E402

MESHES = {
    "1_device": {"data": 1, "fsdp": 1, "tensor": 1},
    "data_parallel": {"data": 8, "fsdp": 1, "tensor": 1},
    "fsdp": {"data": 1, "fsdp": 8, "tensor": 1},
    "tensor_parallel": {"data": 1, "fsdp": 1, "tensor": 8},
}


def parse():
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument("--variant", default="default", help="configs/synthetic.py variant (default: the full model)")
  p.add_argument("--batch", type=int, default=32, help="global batch (default: the config's, 32)")
  p.add_argument("--steps", type=int, default=5, help="timed steps per mesh (median reported)")
  p.add_argument("--meshes", default=",".join(MESHES), help="comma-separated subset of " + ",".join(MESHES))
  return p.parse_args()


def random_batch(config: deft.DeftConfig, batch: int, text_len: int, vocab: int) -> dict:
  rng = np.random.default_rng(0)
  shapes = schema.batch_spec(config, batch, text_len, targets=True)
  out = {k: rng.integers(0, 255 if v.dtype == np.uint8 else 2, v.shape).astype(v.dtype) for k, v in shapes.items()}
  if "flow" in out:
    out["flow"] = rng.normal(size=shapes["flow"].shape).astype(np.float32)
  out["text_ids"] = rng.integers(0, vocab, (batch, text_len)).astype(np.int32)
  out["text_mask"] = np.ones((batch, text_len), np.int32)
  out["prompt_len"] = np.full((batch,), text_len // 2, np.int32)
  out["loss_mask"] = (np.arange(text_len) >= text_len // 2).astype(np.float32)[None].repeat(batch, 0)
  out["label"] = rng.integers(0, 3, (batch,)).astype(np.int32)
  return out


def measure(cfg, tokenizer, mesh_sizes: dict, batch: dict, steps: int) -> dict:
  devices = jax.devices()[:1] if mesh_sizes == MESHES["1_device"] else jax.devices()
  mesh = sharding.make_mesh(mesh_sizes, devices=devices)
  rules = sharding.rules(cfg)
  model = state_lib.make_model(cfg, tokenizer)
  state, shardings = state_lib.create_state(cfg, model, mesh, 1000, jax.random.key(0))
  train_step = step_lib.make_train_step(model, dict(cfg.loss), shardings, mesh, rules=rules)
  data = sharding.global_batch(batch, mesh, rules)
  start = time.perf_counter()
  state, m = train_step(state, data, jax.random.key(0))
  m["loss"].block_until_ready()
  compile_s = time.perf_counter() - start
  times = []
  for i in range(steps):
    start = time.perf_counter()
    state, m = train_step(state, data, jax.random.key(i + 1))
    m["loss"].block_until_ready()
    times.append(time.perf_counter() - start)
  step_s = statistics.median(times)
  n = len(batch["label"])
  return {"mesh": mesh_sizes, "step_s": round(step_s, 4), "examples_per_s": round(n / step_s, 2),
          "first_step_s": round(compile_s, 1)}


def main():
  a = parse()
  if len(jax.devices()) < 8:
    raise SystemExit(f"needs 8 devices, have {len(jax.devices())} (XLA_FLAGS set after jax started?)")
  cfg = cli.load_config(["--config", f"configs/synthetic.py:{a.variant}"])
  with tempfile.TemporaryDirectory() as tmp:
    tokenizer_lib.train_tokenizer(os.path.join(tmp, "tok"), cfg.data.tokenizer_vocab)
    tokenizer = tokenizer_lib.load_tokenizer(os.path.join(tmp, "tok"))
  config = state_lib.deft_config(cfg, tokenizer)
  batch = random_batch(config, a.batch, cfg.data.max_text_len, len(tokenizer))
  results = {}
  for name in a.meshes.split(","):
    results[name] = measure(cfg, tokenizer, MESHES[name], batch, a.steps)
    print(f"{name:16s} {results[name]['examples_per_s']:8.2f} examples/s  step {results[name]['step_s']:.3f} s  "
          f"(first step {results[name]['first_step_s']} s)", flush=True)
  base = results.get("1_device", {}).get("examples_per_s")
  for r in results.values():
    r["ratio_vs_1_device"] = round(r["examples_per_s"] / base, 3) if base else None
  print(json.dumps({"benchmark": "train_throughput", "variant": a.variant, "global_batch": a.batch,
                    "timed_steps": a.steps, "devices": len(jax.devices()), "cpu_cores": os.cpu_count(),
                    "load_average": round(os.getloadavg()[0], 2), "results": results}))


if __name__ == "__main__":
  main()
