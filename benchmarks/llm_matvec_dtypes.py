"""Why fewer weight bytes do not buy faster batch-1 decoding on XLA:CPU (issue 13 item 7).

Decoding one token multiplies a (1, K) activation by every weight matrix once, so its time is
the weights' bytes over the memory bandwidth, and bf16 or int8 weights would read 2x or 4x fewer
bytes than float32. That pays only if the product streams the narrow weights at the bandwidth.
This times SmolLM2-135M's largest product, the tied LM head (576 x 49152), batch 1, in:

  f32          jnp.dot on float32 weights (what deft-jax decodes with today)
  bf16         jnp.dot on bfloat16 weights and activation, float32 accumulation
  int8_dot     int8 weights with a per-column scale, converted to float32 inside the jit, then dot
  int8_reduce  the same as one fused multiply-and-sum over K (no float32 copy of the weights)

beside PyTorch's float32 and bfloat16 matvec on the same weights (the reference), and reports the
bytes each reads per call over its time. The last line printed is one JSON object.

  JAX_PLATFORMS=cpu python benchmarks/llm_matvec_dtypes.py
"""

import argparse
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import torch

import timing


def per_call_seconds(fn, repeats: int) -> float:
  """Best of 3 runs of `repeats` back-to-back calls (after a warm-up), per call."""
  fn()
  return timing.best_of(lambda: [fn() for _ in range(repeats)], 3)[0] / repeats


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--k", type=int, default=576)
  parser.add_argument("--n", type=int, default=49152)
  parser.add_argument("--repeats", type=int, default=30)
  args = parser.parse_args()
  k, n = args.k, args.n
  rng = np.random.default_rng(0)
  w = rng.normal(size=(k, n)).astype(np.float32)
  scale = np.abs(w).max(0) / 127
  q = np.round(w / scale).astype(np.int8)
  x = rng.normal(size=(1, k)).astype(np.float32)

  xj, wj, sj = jnp.asarray(x), jnp.asarray(w), jnp.asarray(scale)
  qj, q_rows = jnp.asarray(q), jnp.asarray(np.ascontiguousarray(q.T))  # (K, N) and (N, K) layouts
  wb, xb = wj.astype(jnp.bfloat16), xj.astype(jnp.bfloat16)
  variants = {
      "f32": (jax.jit(lambda x, w: x @ w), (xj, wj), 4 * k * n),
      "bf16": (jax.jit(lambda x, w: jnp.dot(x, w, preferred_element_type=jnp.float32)), (xb, wb), 2 * k * n),
      "int8_dot": (jax.jit(lambda x, q, s: (x @ q.astype(jnp.float32)) * s), (xj, qj, sj), k * n),
      "int8_reduce": (jax.jit(lambda x, q, s: jnp.sum(q.astype(jnp.float32) * x, axis=-1) * s), (xj, q_rows, sj),
                      k * n),
  }
  exact = x @ w
  report = {"benchmark": "llm_matvec_dtypes", "shape": [1, k, n], "cpu_count": os.cpu_count(),
            "devices": len(jax.devices()), "torch_threads": torch.get_num_threads(),
            "load_average_start": round(os.getloadavg()[0], 2)}
  for name, (fn, inputs, n_bytes) in variants.items():
    out = np.asarray(fn(*inputs), np.float32).reshape(1, n)
    seconds = per_call_seconds(lambda fn=fn, inputs=inputs: fn(*inputs).block_until_ready(), args.repeats)
    report[name] = {"ms": round(1e3 * seconds, 3), "bytes": n_bytes, "GBps": round(n_bytes / seconds / 1e9, 2),
                    "max_abs_error": round(float(np.abs(out - exact).max()), 4)}
  xt, wt = torch.from_numpy(x), torch.from_numpy(w)
  with torch.no_grad():
    for name, (a, b, n_bytes) in {"torch_f32": (xt, wt, 4 * k * n),
                                  "torch_bf16": (xt.bfloat16(), wt.bfloat16(), 2 * k * n)}.items():
      seconds = per_call_seconds(lambda a=a, b=b: a @ b, args.repeats)
      report[name] = {"ms": round(1e3 * seconds, 3), "bytes": n_bytes, "GBps": round(n_bytes / seconds / 1e9, 2)}
  for name in variants:
    report[name]["speed_vs_xla_f32"] = round(report["f32"]["ms"] / report[name]["ms"], 3)
    report[name]["speed_vs_torch_f32"] = round(report["torch_f32"]["ms"] / report[name]["ms"], 3)
  report["load_average"] = round(os.getloadavg()[0], 2)
  for name in (*variants, "torch_f32", "torch_bf16"):
    print(f"{name:12s} {report[name]['ms']:8.3f} ms  {report[name]['GBps']:6.2f} GB/s of its weight bytes")
  print(json.dumps(report))


if __name__ == "__main__":
  main()
