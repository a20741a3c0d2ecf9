"""Stage 1 of DEFT on a real corpus: expert alignment on Uni-MER with the LLM frozen.

    deft-jax build uni_mer/casme3 --manual_dir ~/data/CASME3        # once; builds casme3 too
    deft-jax train --config configs/stage1_real.py:megc2019 --workdir /tmp/s1 \
        --config.model.llm_path=/models/Qwen2.5-0.5B

The argument names the *target* benchmark of stage 2 (casme2, samm, smic, casme3, megc2019);
stage 1 reads the Uni-MER set of another corpus (STAGE1_CORPUS), whose subjects are not the
target's, so stage 2's leave-one-subject-out test subjects were never seen in stage 1. (To
align on the target corpus itself, hold the same test subjects out of both stages.)
"""

import ml_collections

from configs import stage1_synthetic
from configs import synthetic

# Target benchmark -> (class scheme, the corpus stage 1 aligns on).
TARGETS = {
    "megc2019": ("composite", "casme3"),
    "casme2": ("casme2-5", "casme3"),
    "samm": ("samm-5", "casme3"),
    "smic": ("composite", "casme3"),
    "casme3": ("casme3-7", "megc2019"),
}


def real_config(target: str) -> ml_collections.ConfigDict:
  """configs/synthetic.py's model and optimiser on a real corpus's records (64 px, 8 frames)."""
  if target not in TARGETS:
    raise ValueError(f"unknown target {target!r}; use one of {sorted(TARGETS)}")
  c = synthetic.get_config()
  with c.unlocked():
    c.data.scheme = TARGETS[target][0]
    c.data.answers = "uni_mer"
    c.data.max_text_len = 128
    c.data.train_split = "train"  # real builders have one split: subjects are held out by
    c.data.test_split = "train"  # data.holdout_subjects (or the LOSO runner)
    c.loss.decorrelation = 0.1
  return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = real_config(arg or "megc2019")
  with c.unlocked():
    c.data.name = f"uni_mer/{TARGETS[arg or 'megc2019'][1]}"
  # What makes a stage-1 job (LoRA off, every llm/ parameter frozen), as on synthetic data.
  c.update_from_flattened_dict({**stage1_synthetic.overrides(), "train.steps": 2000})
  return c
