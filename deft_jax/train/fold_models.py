"""The models the fold program trains, behind one interface: DEFT and the published peers.

A `Spec` gives, for one fold, init(rng) -> variables, loss(variables, batch, rng) -> (loss,
(terms, updated non-param collections)) and logits(variables, batch) -> (B, C) emotion logits,
over a batch gathered from fold_data.Clips (flow, face, label, text...). The fold program
vmaps them over folds.

A pretrained LLM (model.llm_path) is the one part no fold should copy: its frozen leaves are the
Spec's `base`, one tree that every fold reads and none trains, while each fold's parameters hold
only what trains (LoRA, grown rows, experts, projectors, heads). Every fold starts from `start`
where it is given: the checkpoint's grown rows (at the mean row), or a model trained first on
another corpus (folds.pretrain, train/loso.py).
"""

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

from deft_jax.models import hf
from deft_jax.models.peers import offapexnet, ststnet
from deft_jax.train import losses, optimizer as optimizer_lib, sharding, state as state_lib

PEERS = {"ststnet": ststnet.STSTNet, "offapexnet": offapexnet.OffApexNet}
MODELS = ("deft",) + tuple(PEERS)


@dataclasses.dataclass(frozen=True)
class Spec:
  name: str
  init: Callable
  loss: Callable
  logits: Callable
  frozen: tuple[str, ...] = ()  # param path regexes the optimizer keeps fixed
  base: Any = None  # frozen params shared by every fold (nested dict), outside the fold axis
  start: Any = None  # {path tuple: array}: trainable leaves every fold starts from instead of its init


def peer(name: str, num_classes: int, sample: dict, smoothing: float = 0.0) -> Spec:
  """A peer network over the flow alone (u, v, strain)."""
  module = PEERS[name](num_classes=num_classes)

  def init(rng):
    return dict(module.init({"params": rng, "dropout": rng}, sample["flow"][:1], train=False))

  def loss(variables, batch, rng):
    mutable = [k for k in variables if k != "params"]
    logits, updated = module.apply(variables, batch["flow"], train=True, rngs={"dropout": rng}, mutable=mutable)
    ce = losses.emotion_loss(logits, batch, smoothing)
    return ce, ({"emotion": ce}, dict(updated))

  def logits(variables, batch):
    return module.apply(variables, batch["flow"], train=False)

  return Spec(name, init, loss, logits)


def deft_batch(batch: dict, evaluation: bool) -> dict:
  """The DEFT model's batch from gathered clips: the face (when loaded) as both keyframes (the
  composite ships one crop per clip) and, in evaluation, the instruction without any answer token."""
  prefix = "eval_" if evaluation else ""
  out = {"flow": batch["flow"], "aus": batch["aus"], "label": batch["label"],
         **{k: batch[prefix + k] for k in ("text_ids", "text_mask", "loss_mask", "prompt_len")}}
  # placed regions (folds.face_geometry), mixup, the domain adversary's target (folds.adversary)
  for key in ("region_boxes", "mix_weight", "mix_label", "adversary_label"):
    if key in batch:
      out[key] = batch[key]
  if "face" in batch:  # only when the structure expert reads it
    out["keyframes"] = jnp.stack([batch["face"], batch["face"]], axis=1)
  return out


def pretrained_base(cfg, model, sample_batch) -> tuple[dict, dict]:
  """(base, start) from model.llm_path: the frozen leaves (optim.frozen) as one shared tree, and
  the checkpoint's trainable leaves (e.g. the grown rows) as {path: array}. Frozen leaves the
  checkpoint lacks (a frozen expert) take the seeded init, the same for every fold."""
  _, loaded = hf.from_pretrained(cfg.model.llm_path, param_dtype=state_lib.dtype(cfg.model.param_dtype),
                                 rules=sharding.rules(cfg), added_tokens=model.config.llm.added_tokens,
                                 scan_layers=cfg.model.scan_layers)
  loaded = {("llm",) + k: v for k, v in traverse_util.flatten_dict(loaded).items()}
  shapes = jax.eval_shape(lambda rng: nn.meta.unbox(model.init(rng, sample_batch)["params"]), jax.random.key(0))
  train, frozen = optimizer_lib.split_trainable(shapes, tuple(cfg.optim.frozen))
  unloaded = [k for k in frozen if k not in loaded]
  seeded = {}
  if unloaded:
    def init(rng):
      flat = traverse_util.flatten_dict(nn.meta.unbox(model.init(rng, sample_batch)["params"]))
      return {k: flat[k] for k in unloaded}
    seeded = jax.jit(init)(jax.random.key(cfg.seed))
  base = traverse_util.unflatten_dict({k: loaded[k] if k in loaded else seeded[k] for k in frozen})
  return base, {k: v for k, v in loaded.items() if k in train}


def deft(cfg, tokenizer, sample: dict, smoothing: float = 0.0, adversary_classes: int = 0) -> Spec:
  """DEFT as configured (experts -> projectors -> LLM + LoRA) with its hybrid loss; with
  model.llm_path, over the checkpoint's frozen base (pretrained_base); with `adversary_classes`,
  a domain adversary naming each clip's `adversary_label` among them (models/adversary.py)."""
  model = state_lib.make_model(cfg, tokenizer)
  if adversary_classes:
    model = model.clone(config=dataclasses.replace(model.config, adversary_classes=adversary_classes))
  weights = dict(cfg.loss)
  sample_batch = deft_batch(jax.tree.map(lambda x: x[:1], sample), False)
  base, start = pretrained_base(cfg, model, sample_batch) if cfg.model.llm_path else (None, None)

  def init(rng):
    params = nn.meta.unbox(model.init(rng, sample_batch)["params"])
    optimizer_lib.check_frozen(params, tuple(cfg.optim.frozen))
    return {"params": params}

  def loss(variables, batch, rng):
    b = deft_batch(batch, False)
    out = model.apply(variables, b, deterministic=False, rngs={"dropout": rng})
    total, terms = losses.hybrid_loss(out, b, weights, smoothing=smoothing)
    return total, (terms, {})

  def logits(variables, batch):
    return model.apply(variables, deft_batch(batch, True))["emotion_logits"]

  return Spec("deft", init, loss, logits, tuple(cfg.optim.frozen), base, start)
