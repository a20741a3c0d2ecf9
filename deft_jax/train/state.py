"""Building the DEFT model and its sharded train state from config."""

import dataclasses
import math
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util
from flax.training import train_state

from deft_jax.data import tokenizer as tokenizer_lib
from deft_jax.facs import emotions
from deft_jax.models import deft, llm as llm_lib, lora as lora_lib
from deft_jax.models.experts import registry
from deft_jax.train import optimizer as optimizer_lib, sharding

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def dtype(name: str):
  if name not in _DTYPES:
    raise ValueError(f"unknown dtype {name!r}; use one of {sorted(_DTYPES)}")
  return _DTYPES[name]


def llm_config(cfg, vocab_size: int) -> llm_lib.LlmConfig:
  """From a local HF checkpoint's config.json, or the inline config (random init).

  A checkpoint whose table has no spare rows for the tokens the tokenizer adds (the expert
  markers) grows by exactly those: LlmConfig.added_tokens, recorded in the model's config.
  """
  if cfg.model.llm_path:
    path = os.path.join(cfg.model.llm_path, "config.json")
    if not os.path.exists(path):
      raise FileNotFoundError(f"model.llm_path={cfg.model.llm_path}: no config.json there (a Hugging Face folder; "
                              "`deft-jax convert-llm FILE.gguf FOLDER` makes one from a GGUF file)")
    config = llm_lib.LlmConfig.from_hf(path)
    return dataclasses.replace(config, added_tokens=max(0, vocab_size - config.vocab_size))
  # Round the vocabulary up so it shards evenly over any tensor axis we use.
  return llm_lib.LlmConfig(vocab_size=64 * math.ceil(vocab_size / 64), **cfg.model.llm.to_dict())


def deft_config(cfg, tokenizer, llm: llm_lib.LlmConfig | None = None) -> deft.DeftConfig:
  """`llm` replaces the configured LLM (AOT planning at a published model's size)."""
  m = cfg.model
  specs = registry.configured(m)
  names = [registry.markers(name) for name, _, _ in specs]
  unknown = (None, tokenizer.unk_token_id)
  missing = [t for pair in names for t in pair if tokenizer.convert_tokens_to_ids(t) in unknown]
  if missing:  # an expert the tokenizer was not made with: its markers join the vocabulary
    tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
  ids = tokenizer.convert_tokens_to_ids
  markers = tuple((ids(open_), ids(close)) for open_, close in names)
  lora = None
  if m.lora.enabled:
    lora = lora_lib.LoraConfig(rank=m.lora.rank, alpha=m.lora.alpha, dropout=m.lora.dropout, targets=m.lora.targets)
  llm = llm or llm_config(cfg, len(tokenizer))
  # An id past the table would embed as NaN (jnp.take's fill) and train on silently: refuse it here.
  head = tokenizer_lib.prompt_layout(tokenizer).head_ids
  largest = max([len(tokenizer) - 1, *head] + [i for pair in markers for i in pair])
  if largest >= llm.total_vocab:
    raise ValueError(f"token id {largest} of the tokenizer ({len(tokenizer)} tokens) is past the LLM's embedding "
                     f"table of {llm.total_vocab} rows ({cfg.model.llm_path or 'config.model.llm'})")
  return deft.DeftConfig(
      llm=llm, num_classes=len(emotions.SCHEMES[cfg.data.scheme]), head_ids=tuple(head), markers=markers,
      expert_specs=tuple(specs), lora=lora, projector_hidden=m.projector_hidden)


def make_model(cfg, tokenizer, llm: llm_lib.LlmConfig | None = None) -> deft.DeftModel:
  return deft.DeftModel(deft_config(cfg, tokenizer, llm), dtype(cfg.model.dtype), dtype(cfg.model.param_dtype),
                        cfg.model.remat, cfg.model.scan_layers)


class TrainState(train_state.TrainState):
  """`params` are the trainable weights only (what the optimizer updates and checkpoints hold);
  `frozen` is the base (every leaf optim.frozen matches): read by the model, never differentiated,
  never in the optimizer state nor in a checkpoint (it comes back from its HF folder or its seed)."""

  frozen: Any = None


def split_params(params, frozen: tuple[str, ...]) -> tuple[dict, dict]:
  """(trainable, frozen) nested trees by the optim.frozen patterns."""
  train, fixed = optimizer_lib.split_trainable(params, frozen)
  return traverse_util.unflatten_dict(train), traverse_util.unflatten_dict(fixed)


def merge_params(params, frozen) -> dict:
  """Trainable and frozen weights as one tree (what the model applies to)."""
  if not frozen:
    return params
  return traverse_util.unflatten_dict({**traverse_util.flatten_dict(frozen), **traverse_util.flatten_dict(params)})


def all_params(state) -> dict:
  return merge_params(state.params, state.frozen)


def put_params(state, updates: dict):
  """`state` with {path tuple: array} written into whichever of params / frozen holds each path,
  each on its leaf's sharding and in its dtype."""
  trees = {"params": traverse_util.flatten_dict(state.params), "frozen": traverse_util.flatten_dict(state.frozen or {})}
  for path, value in updates.items():
    part = next((t for t in trees.values() if path in t), None)
    if part is None:
      raise KeyError(f"{'/'.join(path)}: no such parameter in the model")
    old = part[path]
    if tuple(old.shape) != tuple(value.shape):
      raise ValueError(f"{'/'.join(path)}: shape {tuple(value.shape)} given, {tuple(old.shape)} in the model")
    part[path] = jax.device_put(value.astype(old.dtype), old.sharding)
  return state.replace(params=traverse_util.unflatten_dict(trees["params"]),
                       frozen=traverse_util.unflatten_dict(trees["frozen"]))


def checkpointed(state) -> dict:
  """What a checkpoint holds of a train state: step, trainable weights, optimizer state."""
  return {"step": state.step, "params": state.params, "opt_state": state.opt_state}


def abstract_state(cfg, model: deft.DeftModel, mesh, total_steps: int):
  """Shapes and shardings of the train state, and the function that makes it; nothing allocated.

  Shapes come from eval_shape (with logical-axis boxes), shardings from the rules table through
  the one resolver (optimizer moments inherit their parameter's). Returns (abstract, shardings,
  init) where `abstract` is a tree of ShapeDtypeStructs carrying their shardings (an AOT or
  restore target) and `init(rng)` builds the real state.
  """
  tx = optimizer_lib.make_optimizer(cfg.optim, total_steps)
  batch = deft.init_batch(model.config, 1, cfg.data.max_text_len)
  trainable = dtype(cfg.model.trainable_dtype) if cfg.model.trainable_dtype else None
  frozen_patterns = tuple(cfg.optim.frozen)

  def init_boxed(rng):
    params = model.init(rng, batch)["params"]
    optimizer_lib.check_frozen(params, frozen_patterns)
    if trainable is not None:
      params = cast_trainable(params, frozen_patterns, trainable)
    train, fixed = split_params(params, frozen_patterns)
    return TrainState.create(apply_fn=model.apply, params=train, tx=tx, frozen=fixed)

  boxed = jax.eval_shape(init_boxed, jax.random.key(0))
  shardings = sharding.resolve(boxed, mesh, sharding.rules(cfg))
  abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                          nn.meta.unbox(boxed), shardings)
  return abstract, shardings, lambda rng: nn.meta.unbox(init_boxed(rng))


def cast_trainable(params, frozen: tuple[str, ...], to):
  """Trainable leaves (not matching `frozen`) in `to`: float32 master weights over a bf16 base."""
  labels = optimizer_lib.param_labels(params, frozen)
  return jax.tree.map(lambda label, p: jax.tree.map(lambda x: x.astype(to), p) if label == "train" else p,
                      labels, params, is_leaf=lambda x: isinstance(x, nn.meta.AxisMetadata))


def create_state(cfg, model: deft.DeftModel, mesh, total_steps: int, rng):
  """The train state, initialised directly into its shardings (no host-side full copy).

  Returns (state, state_shardings).
  """
  _, shardings, init = abstract_state(cfg, model, mesh, total_steps)
  return jax.jit(init, out_shardings=shardings)(rng), shardings
