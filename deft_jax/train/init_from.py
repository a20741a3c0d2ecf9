"""Where a run's parameters start, other than their random init.

  model.llm_path              a local HF folder (`deft-jax convert-llm` makes one from GGUF) ->
                              the LLM; rows grown for added tokens start at the mean row;

  model.structure.checkpoint  a local SigLIP/CLIP vision folder -> the structure expert's ViT;
  model.texture.checkpoint    the same kind of folder, inflated over time -> the texture expert;
  train.init_from             a stage-1 run: every parameter whose path and shape match
                              starts from that run's weights (its checkpoints hold what it
                              trained: experts, projectors, heads, grown rows); the rest (LoRA,
                              a new head) keep their init. Optimizer state and step start fresh.
`initial_state` applies them in that order onto the seeded init; the trainer then resumes from
the workdir's own checkpoint, so what wins is: own checkpoint, then init_from, then the HF base.
The frozen base is never checkpointed: a resume or an evaluation rebuilds it the same way, and
`check_base` refuses a workdir whose base changed since it was written.
"""

import hashlib
import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import traverse_util

from deft_jax.models import hf
from deft_jax.train import sharding, state as state_lib

BASE_FILE = "base.json"


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
  flat = {**traverse_util.flatten_dict(state.frozen or {}), **traverse_util.flatten_dict(state.params)}
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
  if updates:
    log(f"init: {summary.get('vision', 0)} params from vision checkpoints"
        + (f", {summary['restored']} from {cfg.train.init_from} ({summary['initialised']} initialised,"
           f" {len(summary['unused'])} of its params unused)" if cfg.train.init_from else ""))
  return state_lib.put_params(state, {k: np.asarray(v) for k, v in updates.items()}), summary


def load_pretrained_llm(cfg, state, mesh, llm_config):
  """Puts a local HF checkpoint's weights into the LLM part of the state (frozen base and any
  trainable part alike); LoRA stays fresh, grown vocabulary rows start at the mean row."""
  _, loaded = hf.from_pretrained(cfg.model.llm_path, param_dtype=state_lib.dtype(cfg.model.param_dtype),
                                 mesh=mesh, rules=sharding.rules(cfg), added_tokens=llm_config.added_tokens,
                                 scan_layers=cfg.model.scan_layers)
  return state_lib.put_params(state, {("llm",) + path: value
                                      for path, value in traverse_util.flatten_dict(loaded).items()})


def initial_state(cfg, model, mesh, total_steps: int, log=print):
  """(state, shardings) before any resume: seeded init, then the HF base, then init_from."""
  state, shardings = state_lib.create_state(cfg, model, mesh, total_steps, jax.random.key(cfg.seed))
  if cfg.model.llm_path:
    state = load_pretrained_llm(cfg, state, mesh, model.config.llm)
  state, _ = initialise(cfg, state, model.config, log)
  return state, shardings


def base_fingerprint(cfg) -> dict:
  """What the frozen base is made from: the HF folder and the SHA-256 of its weight files, the
  init_from run, and the seed of the random init (a checkpoint references these, not the weights);
  and the LLM's layer layout, which names the checkpointed LLM leaves (layers/ or layers_{i}/)."""
  out = {"seed": int(cfg.seed), "init_from": cfg.train.init_from or None, "llm_path": cfg.model.llm_path or None,
         "scan_layers": bool(cfg.model.scan_layers)}
  if cfg.model.llm_path:
    digest = hashlib.sha256()
    for file in sorted(set(hf.checkpoint_index(cfg.model.llm_path).values())):
      with open(file, "rb") as f:
        for block in iter(lambda: f.read(16 << 20), b""):
          digest.update(block)
    out["llm_sha256"] = digest.hexdigest()
  return out


def check_base(cfg, workdir: str) -> dict:
  """Writes WORKDIR/base.json on a first run; on a resume, raises if the base it names changed."""
  path = os.path.join(workdir, BASE_FILE)
  now = base_fingerprint(cfg)
  if os.path.exists(path):
    with open(path) as f:
      before = {"scan_layers": False, **json.load(f)}  # written before scanned layers: unrolled
    changed = sorted(k for k in set(now) | set(before) if now.get(k) != before.get(k))
    if changed:
      raise InitFromError(f"{path}: this workdir's checkpoints were trained on another frozen base "
                          f"({', '.join(f'{k}: {before.get(k)} then, {now.get(k)} now' for k in changed)}); "
                          "use a new --workdir, or the base and settings it was trained with")
  elif jax.process_index() == 0:
    with open(path + ".tmp", "w") as f:
      json.dump(now, f, indent=2)
    os.replace(path + ".tmp", path)
  return now
