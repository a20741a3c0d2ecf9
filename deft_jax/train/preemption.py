"""Stopping cleanly on SIGTERM (preemption): finish the step, checkpoint, exit.

One process: a SIGTERM handler raises a flag that the loop reads after each step. Several
processes: JAX's preemption sync service (started by jax.distributed.initialize) catches the
signal on any host and names one step at which every host stops together, so they all save
the same step.
"""

import signal
import threading

import jax
from jax.experimental import multihost_utils

# What `deft-jax train` exits with after a preemption checkpoint: os.EX_TEMPFAIL, "try again".
EXIT_CODE = 75


class Preempted(Exception):
  """Training stopped at `step` on SIGTERM after saving a checkpoint; rerun to resume."""

  def __init__(self, step: int):
    super().__init__(f"preempted (SIGTERM) at step {step}; checkpoint saved, run the same command to resume")
    self.step = step


class Watch:
  """Context manager; `watch(step)` is True when training should stop after `step`."""

  def __enter__(self):
    self._flag = threading.Event()
    self._multihost = jax.distributed.is_initialized()
    self._previous = None
    if not self._multihost and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, lambda *_: self._flag.set())
    return self

  def __call__(self, step: int) -> bool:
    if self._multihost:
      return multihost_utils.reached_preemption_sync_point(step)
    return self._flag.is_set()

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
    return False
