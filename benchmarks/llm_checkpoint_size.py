"""Checkpoint size of a fine-tuning run on a published 7B/8B LLM, from shapes only (nothing allocated).

The train state holds the trainable leaves (LoRA, projectors, heads, experts, grown rows) and
their optimizer state; the frozen base stays outside it (train/state.py). Uses the AOT plan's
precision policy (bf16 base, float32 trainables). Prints one JSON line last: per model, the
bytes a checkpoint holds against the bytes of the base it references.
"""

import json
import math

import jax

from configs import synthetic
from deft_jax.models import llm as llm_lib
from deft_jax.train import aot, sharding, state as state_lib


def nbytes(tree) -> int:
  return sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(tree))


def main():
  out = {"benchmark": "llm_checkpoint_size"}
  mesh = sharding.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, devices=jax.devices()[:1])
  for name in ("qwen2.5-7b", "llama-3.1-8b"):
    llm = llm_lib.LlmConfig.from_hf(aot.MODELS[name])
    vocab = aot._Vocabulary(llm.vocab_size, llm.bos_token_id)  # pylint: disable=protected-access
    cfg = synthetic.get_config()
    cfg = aot.plan_config(cfg, 1024, aot.prefix_length(state_lib.deft_config(cfg, vocab, llm)))
    abstract, _, _ = state_lib.abstract_state(cfg, state_lib.make_model(cfg, vocab, llm), mesh, 1000)
    out[name] = {"trainable_params": sum(math.prod(x.shape) for x in jax.tree.leaves(abstract.params)),
                 "checkpoint_MiB": round(nbytes(state_lib.checkpointed(abstract)) / 2**20, 1),
                 "frozen_base_GiB": round(nbytes(abstract.frozen) / 2**30, 2)}
  print(json.dumps(out))


if __name__ == "__main__":
  main()
