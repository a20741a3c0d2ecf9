"""Stage 1 of DEFT on synthetic data: align the experts and projectors to a frozen LLM on Uni-MER.

    deft-jax train --config configs/stage1_synthetic.py --workdir /tmp/stage1
    deft-jax train --config configs/stage2_synthetic.py --workdir /tmp/stage2 --config.train.init_from=/tmp/stage1

Every llm/ parameter is frozen (embeddings and head too) and LoRA is off: the LLM's loss can
only fall by what the expert tokens tell it, as in LLaVA's feature-alignment stage (Liu et al.
2023). The data is Uni-MER built over synthetic_me with skin folds, asynchronous AUs and 30%
of its AU labels corrupted, measured on TV-L1 flow, so the answers carry only flow-confirmed
cues. Only the training split (training subjects) is read; the test split's subjects stay
unseen for stage 2's evaluation.

Variants: "" (the small MEGC2019-shaped set), "tiny" (seconds; for tests) and "smollm2" (the real
SmolLM2-135M-Instruct, frozen whole but for the grown marker rows; see configs/stage2_synthetic.py
for how to make its folder).
"""

import ml_collections

from configs import stage2_synthetic


def overrides(tiny: bool = False) -> dict:
  """What turns a stage-2 job into its stage-1 job; configs/ablations.py:two_stage applies it per point."""
  return {"model.lora.enabled": False, "optim.frozen": (r"^llm/",), "train.steps": 4 if tiny else 150,
          "train.generate_examples": 0 if tiny else 1}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = stage2_synthetic.get_config(arg)  # same data, model and loss; only what trains differs
  c.update_from_flattened_dict(overrides(arg == "tiny"))
  if arg == "smollm2":  # the base frozen whole; the grown marker rows align with the experts
    c.update_from_flattened_dict({"optim.frozen": (r"^llm/(?!.*added_).*",), "train.steps": 10,
                                  "train.checkpoint_every": 10, "train.generate_examples": 3})
  return c
