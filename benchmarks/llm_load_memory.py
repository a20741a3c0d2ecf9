"""Peak host RSS increase while loading a checkpoint, over its size on disk.

Writes a random Llama checkpoint (transformers), then loads it in fresh subprocesses: deft-jax
`hf.from_pretrained` and, as the reference beside it, transformers `from_pretrained`. Each child
imports and runs one trivial op (so library and compiler start-up is not counted), resets its
peak-RSS counter (/proc/self/clear_refs), loads, and reports VmHWM minus the RSS before loading. Prints one JSON line last. Linux only.
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile


def parse():
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument("--layers", type=int, default=4)
  p.add_argument("--width", type=int, default=512)
  p.add_argument("--heads", type=int, default=8)
  p.add_argument("--kv_heads", type=int, default=2)
  p.add_argument("--mlp", type=int, default=1376)
  p.add_argument("--vocab", type=int, default=32000)
  p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  p.add_argument("--child", choices=["deft_jax", "transformers"], help=argparse.SUPPRESS)
  p.add_argument("--path", help=argparse.SUPPRESS)
  return p.parse_args()


def _mib(field: str) -> float:
  with open("/proc/self/status") as f:
    status = dict(line.split(":", 1) for line in f)
  return int(status[field].split()[0]) / 1024


def child(a):
  """Runs in a fresh process: import, reset the peak counter, load, report."""
  if a.child == "deft_jax":
    import jax
    import jax.numpy as jnp
    from deft_jax.models import hf

    jax.jit(lambda x: x + 1)(jnp.zeros(1)).block_until_ready()  # backend and compiler start-up
    load = lambda: jax.block_until_ready(hf.from_pretrained(a.path, param_dtype=getattr(jnp, a.dtype))[1])
  else:
    import torch
    import transformers

    torch.zeros(1) + 1
    load = lambda: transformers.AutoModelForCausalLM.from_pretrained(a.path, dtype=getattr(torch, a.dtype))
  with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset VmHWM to the current RSS
  before = _mib("VmRSS")
  params = load()
  print(json.dumps({"before_mib": before, "peak_mib": _mib("VmHWM"), "after_mib": _mib("VmRSS")}))
  del params


def measure(kind, path, a):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  cmd = [sys.executable, __file__, "--child", kind, "--path", path, "--dtype", a.dtype]
  out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
  return json.loads(out.strip().splitlines()[-1])


def main():
  a = parse()
  if a.child:
    return child(a)
  import torch
  import transformers

  config = transformers.LlamaConfig(
      vocab_size=a.vocab, hidden_size=a.width, intermediate_size=a.mlp, num_hidden_layers=a.layers,
      num_attention_heads=a.heads, num_key_value_heads=a.kv_heads)
  with tempfile.TemporaryDirectory() as path:
    transformers.LlamaForCausalLM(config).to(getattr(torch, a.dtype)).save_pretrained(path)
    disk = sum(os.path.getsize(f) for f in glob.glob(os.path.join(path, "*.safetensors"))) / 2**20
    ours, ref = measure("deft_jax", path, a), measure("transformers", path, a)
  rise = lambda m: m["peak_mib"] - m["before_mib"]
  print(json.dumps({
      "benchmark": "llm_load_memory", "layers": a.layers, "width": a.width, "vocab": a.vocab, "dtype": a.dtype,
      "disk_mib": round(disk, 1), "deft_jax_peak_rise_mib": round(rise(ours), 1),
      "deft_jax_ratio_vs_disk": round(rise(ours) / disk, 3), "transformers_peak_rise_mib": round(rise(ref), 1),
      "transformers_ratio_vs_disk": round(rise(ref) / disk, 3),
  }))


if __name__ == "__main__":
  main()
