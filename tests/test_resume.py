"""Fault tolerance of `deft-jax train`, in subprocesses on 8 CPU devices.

A run killed with SIGKILL and restarted, one stopped by SIGTERM and restarted, and one whose
checkpoint save fails part-way and is restarted all log exactly the losses of an
uninterrupted run.
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

import train_runs
from deft_jax.train import checkpoint, preemption

pytestmark = pytest.mark.slow  # trains, restores or runs subprocess jobs: minutes on 2 cores


@pytest.fixture(scope="module")
def job(tmp_path_factory, synthetic_tiny):
  """(command for a workdir, environment, the uninterrupted run's metrics)."""
  tok = train_runs.tokenizer(tmp_path_factory)
  environ = train_runs.env(tmp_path_factory)
  command = lambda workdir, *extra: train_runs.train_command(workdir, synthetic_tiny, tok, *extra)
  reference = train_runs.reference(tmp_path_factory, synthetic_tiny)
  return command, environ, reference


def _same_losses(workdir, reference):
  logged = train_runs.metrics(workdir)
  assert [m["step"] for m in logged] == [m["step"] for m in reference]
  for got, want in zip(logged, reference):
    assert got.keys() == want.keys()
    np.testing.assert_allclose([got[k] for k in sorted(got)], [want[k] for k in sorted(want)], rtol=1e-6,
                               err_msg=f"step {want['step']}")


def _start_and_wait(cmd, environ, lines: int) -> subprocess.Popen:
  """Starts a run and returns once it has logged `lines` steps (and is still running)."""
  workdir = cmd[cmd.index("--workdir") + 1]
  proc = subprocess.Popen(cmd, env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  deadline = time.time() + 300
  while len(train_runs.metrics(workdir)) < lines:
    assert proc.poll() is None, f"run ended before step {lines}: {proc.stderr.read()[-3000:]}"
    assert time.time() < deadline, "run too slow"
    time.sleep(0.02)
  return proc


def _latest(workdir) -> int | None:
  return ocp.CheckpointManager(os.path.join(workdir, "checkpoints")).latest_step()


def test_sigkill_at_any_step_resumes_with_the_same_losses(job, tmp_path):
  command, environ, reference = job
  # A checkpoint every step: the kill most likely lands while one is being written.
  cmd = command(tmp_path / "w", "--config.train.checkpoint_every=1")
  proc = _start_and_wait(cmd, environ, lines=3)
  proc.kill()
  proc.wait()
  assert proc.returncode == -signal.SIGKILL
  assert not (tmp_path / "w" / "results.json").exists(), "the run finished before it was killed"
  assert _latest(tmp_path / "w") >= 1  # resumes from a checkpoint, not from scratch
  train_runs.check(train_runs.run(cmd, environ))
  _same_losses(tmp_path / "w", reference)


def test_sigterm_checkpoints_exits_75_and_resumes(job, tmp_path):
  command, environ, reference = job
  cmd = command(tmp_path / "w")
  proc = _start_and_wait(cmd, environ, lines=2)
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == preemption.EXIT_CODE, err[-3000:]
  assert "preempted (SIGTERM) at step" in err
  stopped = train_runs.metrics(tmp_path / "w")[-1]["step"]
  assert 2 <= stopped < train_runs.STEPS and _latest(tmp_path / "w") == stopped
  assert not (tmp_path / "w" / "results.json").exists()
  train_runs.check(train_runs.run(cmd, environ))
  _same_losses(tmp_path / "w", reference)
  # The trainable weights alone, for export: LoRA and heads in, the frozen base out.
  adapters = checkpoint.read_adapters(tmp_path / "w" / "adapters" / f"step_{train_runs.STEPS}")
  assert any("lora_b" in k for k in adapters) and "emotion_head/kernel" in adapters
  assert "llm/layers/self_attn/q_proj/kernel" not in adapters


INJECT = """
import sys
import orbax.checkpoint as ocp
from deft_jax import cli

real, calls = ocp.type_handlers.ArrayHandler.serialize, []

async def failing(self, *args, **kwargs):
  calls.append(1)
  if len(calls) == 2:  # the second checkpoint (step 4): its folder exists, its arrays never land
    raise OSError("injected: disk full while saving")
  return await real(self, *args, **kwargs)

ocp.type_handlers.ArrayHandler.serialize = failing
sys.exit(cli.main(sys.argv[1:]))
"""


def test_failed_save_keeps_the_previous_checkpoint_and_the_next_save_works(job, tmp_path):
  command, environ, reference = job
  cmd = command(tmp_path / "w")
  script = tmp_path / "inject.py"
  script.write_text(INJECT)
  failed = train_runs.run([sys.executable, str(script), *cmd[3:]], environ)
  assert failed.returncode not in (0, 2) and "injected: disk full" in failed.stderr
  assert _latest(tmp_path / "w") == 2
  train_runs.check(train_runs.run(cmd, environ))
  _same_losses(tmp_path / "w", reference)
  assert _latest(tmp_path / "w") == train_runs.STEPS


@pytest.mark.slow
def test_corrupt_newest_checkpoint_and_torn_log_resume_from_the_previous_one(job, tmp_path, tmp_path_factory):
  """Issue 15, items 6, 7 and 13: an empty _METADATA in the newest checkpoint and a torn last
  metrics line (power loss) resume from the previous checkpoint, saying so, with the same losses."""
  import json
  import shutil
  command, environ, reference = job
  workdir = tmp_path / "w"
  shutil.copytree(os.path.join(train_runs.session_dir(tmp_path_factory, "runs"), "reference"), workdir)
  os.remove(workdir / "results.json")
  (workdir / "checkpoints" / str(train_runs.STEPS) / "state" / "_METADATA").write_text("")
  with open(workdir / "metrics.jsonl", "a") as f:
    f.write('{"step": 9, "loss": 1.2')
  seconds_at = json.loads((workdir / "train_seconds.json").read_text())
  done = train_runs.run(command(workdir), environ)
  train_runs.check(done)
  previous = train_runs.STEPS - 2
  bad = workdir / "checkpoints" / str(train_runs.STEPS)
  assert f"warning: checkpoint {bad} cannot be restored (JSONDecodeError" in done.stderr
  assert "metrics.jsonl line 9 is torn" in done.stderr
  assert f"resumed from step {previous} of {train_runs.STEPS}" in done.stdout
  assert (workdir / "checkpoints.unreadable" / str(train_runs.STEPS)).is_dir()
  _same_losses(workdir, reference)
  assert _latest(workdir) == train_runs.STEPS
  results = json.loads((workdir / "results.json").read_text())
  assert results["train_seconds"] > seconds_at[str(previous)] > 0  # the first run's time counts too


@pytest.mark.slow
def test_no_restorable_checkpoint_stops_naming_them(job, tmp_path, tmp_path_factory):
  import shutil
  command, environ, _ = job
  workdir = tmp_path / "w"
  shutil.copytree(os.path.join(train_runs.session_dir(tmp_path_factory, "runs"), "reference"), workdir)
  for step in (train_runs.STEPS - 2, train_runs.STEPS):
    (workdir / "checkpoints" / str(step) / "state" / "_METADATA").write_text("")
  done = train_runs.run(command(workdir), environ)
  assert done.returncode == 2, done.stderr[-3000:]
  last = done.stderr.strip().splitlines()[-1]
  assert last.startswith("deft-jax train: error: no checkpoint restores: ") and str(workdir / "checkpoints" / "6") in last
