"""The DEFT ablation grid, as data: each point is a set of config overrides on stage 2.

    deft-jax sweep --config configs/ablations.py --workdir /tmp/ablations
    deft-jax sweep --config configs/ablations.py:table --workdir /tmp/table   # 5 points x 3 seeds
    deft-jax sweep --config configs/ablations.py:two_stage --workdir /tmp/two  # the same, DEFT's two stages
    deft-jax sweep --config configs/ablations.py:tiny --workdir /tmp/t

Format read by the sweep runner (config fields beside the base job's):
  sweep: tuple of {"name": str, "overrides": {dotted config path: value}}; a path names an
         existing field of this (locked) config, e.g. "model.texture.enabled", and the value
         replaces it. "full" has no overrides: the model every other point is compared with.
  seeds: tuple of ints; every point runs once per seed (config.seed), so a point's score is a
         mean and spread over seeds.
The base job is configs/stage2_synthetic.py (Uni-MER answers, all experts and loss terms on,
LoRA rank 8); set train.init_from on the command line to start every point from one stage-1
run, or leave it empty for single-stage runs. "two_stage" gives each point its own stage 1
(`stage1`: configs/stage1_synthetic.overrides on top of the point's overrides), so an expert or
Uni-MER switched off is off in both stages, as DEFT trains. With loss.emotion = 0 the classifier head is
not trained: score that point by its generated answers.
"""

import ml_collections

from configs import stage1_synthetic
from configs import stage2_synthetic

POINTS = (
    ("full", {}),
    # One expert off at a time (its tokens and markers leave the prompt).
    ("no_structure", {"model.structure.enabled": False}),
    ("no_texture", {"model.texture.enabled": False}),
    ("no_motion", {"model.motion.enabled": False}),
    # One loss term off at a time.
    ("no_lm_loss", {"loss.lm": 0.0}),
    ("no_emotion_loss", {"loss.emotion": 0.0}),
    ("no_au_loss", {"loss.au": 0.0}),
    ("no_decorrelation", {"loss.decorrelation": 0.0}),
    # Plain label answers instead of Uni-MER's flow-confirmed ones (same records).
    ("label_answers", {"data.answers": "labels"}),
    # Photometric jitter of the training clips (light, gain, colour balance; deft_jax/data/augment.py).
    ("photometric", {"data.augment.brightness": 0.2, "data.augment.contrast": 0.2, "data.augment.colour": 0.1,
                     "data.augment.grayscale": 0.2}),
    # LoRA rank (alpha scaled with it, keeping alpha / rank = 2).
    ("lora_rank_4", {"model.lora.rank": 4, "model.lora.alpha": 8.0}),
    ("lora_rank_16", {"model.lora.rank": 16, "model.lora.alpha": 32.0}),
    ("lora_rank_32", {"model.lora.rank": 32, "model.lora.alpha": 64.0}),
)


# The table the DEFT paper reports and the closing note carries: experts and Uni-MER.
TABLE = ("full", "no_structure", "no_texture", "no_motion", "label_answers")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """arg: "" (every point), "table" (TABLE's points), "two_stage" (TABLE's points, each from its
  own stage 1) or "tiny" (every point, tiny job)."""
  variants = ("", "table", "two_stage", "tiny")
  if (arg or "") not in variants:
    raise ValueError(f"configs/ablations.py: unknown variant {arg!r}; use one of {variants}")
  tabled = arg in ("table", "two_stage")
  c = stage2_synthetic.get_config("tiny" if arg == "tiny" else None)
  chosen = [p for p in POINTS if not tabled or p[0] in TABLE]
  with c.unlocked():
    c.sweep = tuple({"name": name, "overrides": dict(overrides)} for name, overrides in chosen)
    c.seeds = (0, 1, 2)
    if arg == "two_stage":
      c.stage1 = tuple(stage1_synthetic.overrides().items())
  return c
