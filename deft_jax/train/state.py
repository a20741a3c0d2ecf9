"""Building the DEFT model and its sharded train state from config."""

import math
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.training import train_state

from deft_jax.data import tokenizer as tokenizer_lib
from deft_jax.facs import emotions
from deft_jax.models import deft, llm as llm_lib, lora as lora_lib
from deft_jax.models.experts import encoder, motion, structure, texture
from deft_jax.train import optimizer as optimizer_lib, sharding

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def dtype(name: str):
  if name not in _DTYPES:
    raise ValueError(f"unknown dtype {name!r}; use one of {sorted(_DTYPES)}")
  return _DTYPES[name]


def llm_config(cfg, vocab_size: int) -> llm_lib.LlmConfig:
  """From a local HF checkpoint's config.json, or the inline config (random init)."""
  if cfg.model.llm_path:
    return llm_lib.LlmConfig.from_hf(os.path.join(cfg.model.llm_path, "config.json"))
  # Round the vocabulary up so it shards evenly over any tensor axis we use.
  return llm_lib.LlmConfig(vocab_size=64 * math.ceil(vocab_size / 64), **cfg.model.llm.to_dict())


def deft_config(cfg, tokenizer) -> deft.DeftConfig:
  m = cfg.model
  enc = lambda e: encoder.EncoderConfig(**e.encoder.to_dict())
  experts = {
      "structure": structure.StructureConfig(enc(m.structure), m.structure.image_size, m.structure.patch),
      "texture": texture.TextureConfig(enc(m.texture), m.texture.num_frames, m.texture.image_size,
                                       tuple(m.texture.tubelet)),
      "motion": motion.MotionConfig(enc(m.motion), m.motion.flow_size, m.motion.patch, m.motion.flow_scale),
  }
  experts = {k: v if m[k].enabled else None for k, v in experts.items()}
  on = [e for e in deft.EXPERTS if experts[e] is not None]
  if not on:
    raise ValueError("config.model: every expert is disabled; enable at least one")
  ids = tokenizer.convert_tokens_to_ids
  markers = tuple((ids(tokenizer_lib.EXPERT_MARKERS[e][0]), ids(tokenizer_lib.EXPERT_MARKERS[e][1])) for e in on)
  lora = None
  if m.lora.enabled:
    lora = lora_lib.LoraConfig(rank=m.lora.rank, alpha=m.lora.alpha, dropout=m.lora.dropout, targets=m.lora.targets)
  return deft.DeftConfig(
      llm=llm_config(cfg, len(tokenizer)), num_classes=len(emotions.SCHEMES[cfg.data.scheme]),
      bos_id=tokenizer.bos_token_id, markers=markers, lora=lora, projector_hidden=m.projector_hidden, **experts)


def make_model(cfg, tokenizer) -> deft.DeftModel:
  return deft.DeftModel(deft_config(cfg, tokenizer), dtype(cfg.model.dtype), dtype(cfg.model.param_dtype),
                        cfg.model.remat)


def create_state(cfg, model: deft.DeftModel, mesh, total_steps: int, rng):
  """The train state, initialised directly into its shardings (no host-side full copy).

  Shapes first (eval_shape, with logical-axis boxes), then shardings from the rules table
  (optimizer moments inherit their parameter's), then a jitted init with those
  out_shardings. Returns (state, state_shardings).
  """
  tx = optimizer_lib.make_optimizer(cfg.optim, total_steps)
  batch = deft.init_batch(model.config, 1, cfg.data.max_text_len)

  def init_boxed(rng):
    params = model.init(rng, batch)["params"]
    return train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx)

  abstract = jax.eval_shape(init_boxed, rng)
  shardings = sharding.logical_shardings(abstract, mesh, sharding.rules(cfg))
  state = jax.jit(lambda r: nn.meta.unbox(init_boxed(r)), out_shardings=shardings)(rng)
  return state, shardings
