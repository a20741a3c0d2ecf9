"""Multi-host start-up: `jax.distributed.initialize` from config, before anything uses devices.

Three ways in, tried in order:
  * config.distributed.coordinator_address (with num_processes and process_id): explicit;
  * JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID in the environment;
  * config.distributed.auto_detect: JAX reads the cluster (TPU pod, SLURM, Open MPI).
With none of them the job is one process and nothing is called. On CPU, processes talk
through gloo (TCP), JAX's default CPU collectives.
"""

import os

import jax

_ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


class DistributedError(ValueError):
  pass


def settings(dist_cfg, environ=None) -> dict | None:
  """The arguments for jax.distributed.initialize, or None for a single-process job."""
  environ = os.environ if environ is None else environ
  address = dist_cfg.coordinator_address or environ.get("JAX_COORDINATOR_ADDRESS", "")
  num = dist_cfg.num_processes if dist_cfg.num_processes > 0 else int(environ.get("JAX_NUM_PROCESSES", 0))
  pid = dist_cfg.process_id if dist_cfg.process_id >= 0 else int(environ.get("JAX_PROCESS_ID", -1))
  if not address and not dist_cfg.auto_detect:
    return None
  if address and not dist_cfg.auto_detect and (num < 1 or not 0 <= pid < num):
    raise DistributedError(
        f"distributed: coordinator {address!r} needs num_processes >= 1 and 0 <= process_id < num_processes "
        f"(got {num} and {pid}); set config.distributed.* or {', '.join(_ENV)}, or auto_detect=True")
  return {"coordinator_address": address or None, "num_processes": num if num > 0 else None,
          "process_id": pid if pid >= 0 else None}


def initialize(cfg) -> bool:
  """Joins the job's processes if the config or environment names them; True if it did."""
  args = settings(cfg.distributed)
  if args is None or jax.distributed.is_initialized():
    return False
  jax.distributed.initialize(**args)
  return True
