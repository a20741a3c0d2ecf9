"""Where a run's parameters start, other than their random init.

  model.structure.checkpoint  a local SigLIP/CLIP vision folder -> the structure expert's ViT;
  model.texture.checkpoint    the same kind of folder, inflated over time -> the texture expert;
  train.init_from             a stage-1 run: every parameter whose path and shape match
                              starts from that run's weights (the experts, projectors and
                              heads aligned in stage 1); the rest (LoRA, a new head) keep
                              their init. Optimizer state and step start fresh.
The trainer calls `initialise` once, right after creating the state and before resuming from
the workdir's own checkpoint, so a resumed stage-2 run continues from its own steps.
"""

import os

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import traverse_util



class InitFromError(ValueError):
  """A train.init_from path that holds no readable stage-1 checkpoint."""


def state_dir(path: str) -> str:
  """The Orbax "state" item of a workdir (its latest step), a checkpoints folder or a step folder."""
  path = os.path.abspath(os.path.expanduser(path))
  candidates = [path, os.path.join(path, "checkpoints")]
  for folder in candidates:
    if os.path.isdir(os.path.join(folder, "state")):
      return os.path.join(folder, "state")
    steps = sorted(int(d) for d in os.listdir(folder) if d.isdigit()) if os.path.isdir(folder) else []
    steps = [s for s in steps if os.path.isdir(os.path.join(folder, str(s), "state"))]
    if steps:
      return os.path.join(folder, str(steps[-1]), "state")
  raise InitFromError(f"train.init_from={path}: no checkpoint there (expected a workdir, its checkpoints/ "
                      "folder, or one step folder holding 'state')")


def read_params(path: str) -> dict[tuple[str, ...], np.ndarray]:
  """The params of a saved train state, as host arrays by path (nothing else is read)."""
  folder = state_dir(path)
  checkpointer = ocp.PyTreeCheckpointer()
  try:
    tree = checkpointer.metadata(folder).item_metadata.tree["params"]
    item = {"params": jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), tree)}
    args = {"params": jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)}
    restored = checkpointer.restore(folder, args=ocp.args.PyTreeRestore(item=item, restore_args=args,
                                                                          partial_restore=True))
  except Exception as e:  # Orbax raises many kinds for a damaged or foreign folder
    raise InitFromError(f"train.init_from: cannot read params from {folder} ({type(e).__name__}: {e})") from e
  return traverse_util.flatten_dict(restored["params"])


def _pretrained(model_config) -> dict[tuple[str, ...], np.ndarray]:
  """Each expert's weights from the local checkpoints its config names (registry.Expert.pretrained)."""
  return {(name,) + path: value for name, spec, config in model_config.expert_specs
          for path, value in spec.pretrained(config).items()}


def initialise(cfg, state, model_config, log=print):
  """The state with vision checkpoints and train.init_from's params put in, sharded as before.

  Returns (state, summary) where summary counts the parameters taken from each source and
  lists the stage-1 parameters left unused (by path) for the log.
  """
  flat = traverse_util.flatten_dict(state.params)
  updates = _pretrained(model_config)
  missing = [k for k in updates if k not in flat]
  if missing:
    raise InitFromError(f"vision checkpoint params with no place in the model: {['/'.join(k) for k in missing[:5]]}")
  summary = {"vision": len(updates)}
  if cfg.train.init_from:
    stage1 = read_params(cfg.train.init_from)
    taken = {k: v for k, v in stage1.items() if k in flat and flat[k].shape == v.shape}
    summary.update(restored=len(taken), initialised=len(flat) - len(taken),
                   unused=sorted("/".join(k) for k in stage1 if k not in taken))
    updates.update(taken)
  for k, v in updates.items():
    if flat[k].shape != v.shape:
      raise InitFromError(f"{'/'.join(k)}: shape {v.shape} from the checkpoint, {flat[k].shape} in the model")
    flat[k] = jax.device_put(np.asarray(v, flat[k].dtype), flat[k].sharding)
  if updates:
    log(f"init: {summary.get('vision', 0)} params from vision checkpoints"
        + (f", {summary['restored']} from {cfg.train.init_from} ({summary['initialised']} initialised,"
           f" {len(summary['unused'])} of its params unused)" if cfg.train.init_from else ""))
  return state.replace(params=traverse_util.unflatten_dict(flat)), summary
