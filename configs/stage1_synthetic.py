"""Stage 1 of DEFT on synthetic data: align the experts and projectors to a frozen LLM on Uni-MER.

    deft-jax train --config configs/stage1_synthetic.py --workdir /tmp/stage1
    deft-jax train --config configs/stage2_synthetic.py --workdir /tmp/stage2 --config.train.init_from=/tmp/stage1

Every llm/ parameter is frozen (embeddings and head too) and LoRA is off: the LLM's loss can
only fall by what the expert tokens tell it, as in LLaVA's feature-alignment stage (Liu et al.
2023). The data is Uni-MER built over synthetic_me with 30% of its AU labels corrupted, so the
answers carry only flow-confirmed cues. Only the training split (training subjects) is read;
the test split's subjects stay unseen for stage 2's evaluation.

Variants: "" (the small MEGC2019-shaped set) and "tiny" (seconds; for tests).
"""

import ml_collections

from configs import stage2_synthetic


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  tiny = arg == "tiny"
  c = stage2_synthetic.get_config(arg)  # same data, model and loss; only what trains differs
  with c.unlocked():
    c.model.lora.enabled = False
    c.optim.frozen = (r"^llm/",)
    c.train.steps = 4 if tiny else 150
    c.train.generate_examples = 0 if tiny else 1
  return c
