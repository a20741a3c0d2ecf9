"""A trained model back from its workdir: config, tokenizer and params of the latest step.

Only the parameters of the "state" item are read (not the optimizer moments nor the data
iterator), onto one device: inference on a laptop from a checkpoint trained on a pod. A
checkpoint holds the trainable weights only; the frozen base is rebuilt as training built it
(seeded init, model.llm_path, train.init_from) and the checkpoint's weights go on top.
"""

import dataclasses
import os

import jax
import ml_collections
import orbax.checkpoint as ocp

from deft_jax.errors import CheckpointError
from deft_jax.data import tokenizer as tokenizer_lib
from deft_jax.models import deft
from deft_jax.train import init_from, sharding, state as state_lib


@dataclasses.dataclass(frozen=True)
class Trained:
  cfg: ml_collections.ConfigDict
  tokenizer: object
  model: deft.DeftModel
  params: dict | None  # None: not restored yet (restore_params)
  step: int
  mesh: jax.sharding.Mesh  # one device


def checkpoint_dir(workdir) -> str:
  return os.path.join(os.path.abspath(os.fspath(workdir)), "checkpoints")


def has_checkpoint(workdir) -> bool:
  folder = checkpoint_dir(workdir)
  return os.path.isdir(folder) and ocp.CheckpointManager(folder).latest_step() is not None


def tokenizer_path(cfg, workdir) -> str:
  """Where train.load_tokenizer found the tokenizer this model was trained with."""
  return cfg.data.tokenizer or cfg.model.llm_path or os.path.join(os.path.abspath(os.fspath(workdir)), "tokenizer")


def upgraded(saved: dict) -> dict:
  """A saved config in today's fields. Runs saved before the LLM's layers were scanned ran them
  unrolled (no model.scan_layers), and wrote model.remat as a bool."""
  model = dict(saved["model"])
  model.setdefault("scan_layers", False)
  if isinstance(model.get("remat"), bool):
    model["remat"] = "full" if model["remat"] else "none"
  return {**saved, "model": model}


def load(workdir, params: bool = True) -> Trained:
  """The model of the latest checkpoint; with params=False, everything but its params."""
  folder = checkpoint_dir(workdir)
  if not os.path.isdir(folder):
    raise CheckpointError(f"{workdir}: no checkpoints/ folder; train into it first (deft-jax train --workdir)")
  mngr = ocp.CheckpointManager(folder)
  step = mngr.latest_step()
  if step is None:
    raise CheckpointError(f"{folder}: no finished checkpoint")
  saved = mngr.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
  cfg = ml_collections.ConfigDict(upgraded(saved.config))
  tokenizer = tokenizer_lib.load_tokenizer(tokenizer_path(cfg, workdir))
  mesh = sharding.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, devices=jax.devices()[:1])
  trained = Trained(cfg, tokenizer, state_lib.make_model(cfg, tokenizer), None, int(step), mesh)
  return restore_params(workdir, trained) if params else trained


def restore_params(workdir, trained: Trained) -> Trained:
  """`trained` with the params of its checkpoint step, on the first device."""
  mngr = ocp.CheckpointManager(checkpoint_dir(workdir))
  # Shapes and dtypes as training saved them (trainable weights may be kept in float32).
  state, _ = init_from.initial_state(trained.cfg, trained.model, trained.mesh, trained.cfg.train.steps,
                                     log=lambda _: None)
  target = {"params": jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                                   state.params)}
  restored = mngr.restore(trained.step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
      item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target), partial_restore=True)))
  return dataclasses.replace(trained, params=state_lib.all_params(state.replace(params=restored.state["params"])))
