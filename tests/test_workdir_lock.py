"""Two trainings on one workdir: the second is refused, naming the first (issue 15, item 3)."""

import os
import signal
import subprocess
import sys

import pytest

from deft_jax.train import workdir_lock

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env():
  return {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}


def test_second_lock_names_the_holder(tmp_path):
  held = workdir_lock.acquire(str(tmp_path))
  with pytest.raises(workdir_lock.WorkdirLocked, match=f"in use by pid {os.getpid()} on "):
    workdir_lock.acquire(str(tmp_path))
  held.release()
  workdir_lock.acquire(str(tmp_path)).release()


def test_only_the_lead_process_locks(tmp_path):
  held = workdir_lock.acquire(str(tmp_path))
  assert workdir_lock.acquire(str(tmp_path), lead=False) is None
  held.release()


def test_a_killed_holder_leaves_no_lock(tmp_path):
  code = f"from deft_jax.train import workdir_lock; lock = workdir_lock.acquire({str(tmp_path)!r}); print('held', flush=True); input()"
  proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          env=_env(), cwd=ROOT, text=True)
  try:
    assert proc.stdout.readline().strip() == "held"
    with pytest.raises(workdir_lock.WorkdirLocked, match=f"pid {proc.pid} "):
      workdir_lock.acquire(str(tmp_path))
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  workdir_lock.acquire(str(tmp_path)).release()


def test_train_on_a_locked_workdir_exits_2_naming_the_holder(tmp_path):
  held = workdir_lock.acquire(str(tmp_path))
  try:
    out = subprocess.run([sys.executable, "-m", "deft_jax.cli", "train", "--config", "configs/synthetic.py:tiny",
                          "--workdir", str(tmp_path), f"--config.data.data_dir={tmp_path / 'tfds'}"],
                         capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=120)
  finally:
    held.release()
  assert out.returncode == 2, out.stderr
  lines = out.stderr.strip().splitlines()
  assert len(lines) == 1 and f"is in use by pid {os.getpid()}" in lines[0], out.stderr
  assert not (tmp_path / "tfds").exists()  # refused before any work


def test_a_dropped_lock_is_released(tmp_path):
  """trainer.train holds its Lock in a local: a second train() in the same process must work."""
  held = workdir_lock.acquire(str(tmp_path))
  del held
  workdir_lock.acquire(str(tmp_path)).release()
