"""Compile time of the LoRA train step with the LLM's layers scanned (nn.scan) and unrolled.

At SmolLM2-135M's shape with --smollm2 (30 layers, width 576, 9/3 heads, MLP 1536, vocab 49152,
tied; seq 128, batch 4, LoRA rank 8 on all 7 projections), fp32 on this host. For each layout:
seconds to lower and compile the jitted step, and the median step time after it (the scan must
not cost step time). Prints one JSON line last with both and compile_speedup = unrolled /
scanned. The AOT plan of a 7B model compares the same way through `deft-jax aot ...
--config.model.scan_layers=False` (BENCHMARKS.md).
"""

import json
import time

import jax

import llm_lora_step


def measure(a, ids, scan_layers: bool, remat: str) -> dict:
  step, state, base = llm_lora_step.lora_step(a, ids, scan_layers=scan_layers, remat=remat)
  start = time.perf_counter()
  compiled = step.lower(state[0], state[1], base, ids).compile()
  compile_s = time.perf_counter() - start

  def run():
    state[0], state[1], loss = compiled(state[0], state[1], base, ids)
    loss.block_until_ready()

  llm_lora_step.timed(run, a.warmup)
  return {"compile_s": round(compile_s, 2), "step_s": round(llm_lora_step.timed(run, a.steps), 4)}


def main():
  p = llm_lora_step.parser(__doc__)
  p.add_argument("--remat", default="none", help="a llm.REMAT_POLICIES name")
  a = llm_lora_step.parse(p)
  ids = jax.random.randint(jax.random.key(0), (a.batch, a.seq + 1), 0, a.vocab)
  scanned = measure(a, ids, True, a.remat)
  unrolled = measure(a, ids, False, a.remat)
  print(json.dumps({
      "benchmark": "llm_compile", "layers": a.layers, "width": a.width, "seq": a.seq, "batch": a.batch,
      "vocab": a.vocab, "rank": a.rank, "remat": a.remat, "backend": jax.default_backend(),
      "scanned": scanned, "unrolled": unrolled,
      "compile_speedup": round(unrolled["compile_s"] / scanned["compile_s"], 2),
      "step_ratio_scanned_over_unrolled": round(scanned["step_s"] / unrolled["step_s"], 3),
  }))


if __name__ == "__main__":
  main()
