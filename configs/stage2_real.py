"""Stage 2 of DEFT on a real benchmark: LoRA tuning from a stage-1 checkpoint.

    deft-jax train --config configs/stage2_real.py:casme2 --workdir /tmp/s2 \
        --config.train.init_from=/tmp/s1 --config.model.llm_path=/models/Qwen2.5-0.5B \
        --config.data.holdout_subjects='("sub01",)'

The argument is the benchmark (casme2, samm, smic, casme3, megc2019); the data is its Uni-MER
set (uni_mer/<benchmark>), scored in its usual class scheme (configs/stage1_real.py TARGETS).
Parameters whose path and shape match start from the stage-1 run (an emotion head of another
scheme does not match and starts fresh).
"""

import ml_collections

from configs import stage1_real


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  target = arg or "megc2019"
  c = stage1_real.real_config(target)
  with c.unlocked():
    c.data.name = f"uni_mer/{target}"
    c.train.steps = 1000
  return c
