"""Orbax checkpoints: train state, data-iterator position and config, saved together.

Saves are asynchronous and atomic (Orbax writes a temporary folder and renames it when every
item is on disk), so a crash or SIGKILL during a save leaves the previous checkpoint as the
latest one. The trainable weights (LoRA, projectors, heads: everything optim.frozen leaves
out) are also exported alone, as WORKDIR/adapters/step_N/adapters.safetensors.
"""

import os
import shutil
import sys

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
import safetensors.numpy
from jax.experimental import multihost_utils

from deft_jax.errors import CheckpointError
from deft_jax.train import optimizer as optimizer_lib

ADAPTERS = "adapters"
ADAPTER_FILE = "adapters.safetensors"
# Replicated arrays are written cooperatively by their replicas only above this size: below
# it the slicing costs more (one compiled slice per shape) than the parallel write saves.
MIN_REPLICA_SLICE_BYTES = 4 << 20


def _state_handler() -> ocp.PyTreeCheckpointHandler:
  registry = ocp.type_handlers.create_type_handler_registry(
      (int, ocp.type_handlers.ScalarHandler()),
      (float, ocp.type_handlers.ScalarHandler()),
      (np.number, ocp.type_handlers.ScalarHandler()),
      (np.ndarray, ocp.type_handlers.NumpyHandler()),
      (jax.Array, ocp.type_handlers.ArrayHandler(min_slice_bytes_for_replica_parallel=MIN_REPLICA_SLICE_BYTES)),
  )
  return ocp.PyTreeCheckpointHandler(type_handler_registry=registry)


def manager(workdir: str, keep: int) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=True)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"), options=options,
                               item_handlers={"state": _state_handler(),
                                              "data": grain.checkpoint.CheckpointHandler(),
                                              "config": ocp.JsonCheckpointHandler()})


def save(mngr: ocp.CheckpointManager, step: int, state, data_iter, config) -> None:
  """Starts an asynchronous save (the previous one is finished first)."""
  mngr.save(step, args=ocp.args.Composite(
      state=ocp.args.PyTreeSave(state),
      data=grain.checkpoint.CheckpointSave(data_iter),
      config=ocp.args.JsonSave(config.to_dict()),
  ))


def restore(mngr: ocp.CheckpointManager, step: int, abstract_state, data_iter):
  """Restores into the shardings carried by `abstract_state` (which may be a new mesh)."""
  restored = mngr.restore(step, args=ocp.args.Composite(
      state=ocp.args.PyTreeRestore(abstract_state,
                                   restore_args=ocp.checkpoint_utils.construct_restore_args(abstract_state)),
      data=grain.checkpoint.CheckpointRestore(data_iter),
  ))
  return restored.state


UNREADABLE = "checkpoints.unreadable"  # beside checkpoints/: unreadable steps are moved here


def restore_latest_good(mngr: ocp.CheckpointManager, abstract_state, data_iter):
  """(state, step) of the newest checkpoint that restores, or None when there is none.

  A checkpoint that does not restore (a truncated array file, an empty _METADATA after a
  power loss) is named in a warning and moved aside to WORKDIR/checkpoints.unreadable/ (so
  the step can be saved again), and the previous one is tried. CheckpointError, naming
  every checkpoint tried, when none restores.
  """
  steps = sorted(mngr.all_steps(), reverse=True)
  bad = []
  for step in steps:
    path = os.path.join(os.fspath(mngr.directory), str(step))
    try:
      state = restore(mngr, step, abstract_state, data_iter)
    except Exception as e:  # pylint: disable=broad-except  # Orbax, tensorstore and json raise many kinds
      reason = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}"
      bad.append(f"{path} ({reason})")
      print(f"warning: checkpoint {path} cannot be restored ({reason}); trying the previous one", file=sys.stderr)
      continue
    if bad:
      _set_aside(mngr, [s for s in steps if s > step])
    return state, step
  if bad:
    raise CheckpointError(f"no checkpoint restores: {'; '.join(bad)}. Move them away to start afresh")
  return None


def _set_aside(mngr: ocp.CheckpointManager, steps) -> None:
  """Moves unreadable step folders out of the manager's directory (process 0), then reloads."""
  root = os.fspath(mngr.directory)
  if jax.process_index() == 0:
    aside = os.path.join(os.path.dirname(root), UNREADABLE)
    os.makedirs(aside, exist_ok=True)
    for step in steps:
      target = os.path.join(aside, str(step))
      shutil.rmtree(target, ignore_errors=True)
      os.replace(os.path.join(root, str(step)), target)
      print(f"warning: moved unreadable checkpoint {os.path.join(root, str(step))} to {target}", file=sys.stderr)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("deft_jax.checkpoint.set_aside")
  mngr.reload()


def trainable(params, frozen: tuple[str, ...]) -> dict:
  """{"a/b/c": array} of the leaves the optimizer trains, gathered whole onto every host."""
  flat, _ = optimizer_lib.split_trainable(params, frozen, sep="/")
  return {k: np.asarray(v) for k, v in multihost_utils.process_allgather(flat, tiled=True).items()}


def export_adapters(workdir: str, step: int, params, frozen: tuple[str, ...], keep: int) -> str | None:
  """Writes the trainable weights alone (written whole, then renamed into place); keeps `keep`.

  Collective: every process calls it; process 0 writes. Returns the folder (None elsewhere).
  """
  tensors = trainable(params, frozen)
  if jax.process_index() != 0:
    return None
  root = os.path.join(os.path.abspath(workdir), ADAPTERS)
  final = os.path.join(root, f"step_{step}")
  partial = final + ".partial"
  shutil.rmtree(partial, ignore_errors=True)
  os.makedirs(partial)
  safetensors.numpy.save_file(tensors, os.path.join(partial, ADAPTER_FILE),
                              metadata={"step": str(step), "frozen": "\n".join(frozen)})
  shutil.rmtree(final, ignore_errors=True)
  os.rename(partial, final)
  done = sorted((int(d[5:]) for d in os.listdir(root) if d.startswith("step_") and d[5:].isdigit()))
  for old in done[:-keep]:
    shutil.rmtree(os.path.join(root, f"step_{old}"), ignore_errors=True)
  return final


def read_adapters(folder: str) -> dict[str, np.ndarray]:
  """{"a/b/c": array} of an exported adapters folder."""
  path = os.path.join(folder, ADAPTER_FILE)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no {ADAPTER_FILE} in {folder}")
  return safetensors.numpy.load_file(path)
