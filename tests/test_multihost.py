"""Two real processes (4 CPU devices each, gloo over loopback) train like one process with 8.

The two-process run also splits each batch into 2 micro-batches (train.grad_accum_steps=2),
so the same comparison checks that gradient accumulation reproduces the one-batch step.
"""

import json
import os
import subprocess

import numpy as np
import pytest

import train_runs
from deft_jax import cli
from deft_jax.train import distributed, sharding, trainer

pytestmark = pytest.mark.slow  # trains, restores or runs subprocess jobs: minutes on 2 cores


def test_two_processes_match_one_process(tmp_path_factory, tmp_path, synthetic_tiny):
  reference = train_runs.reference(tmp_path_factory, synthetic_tiny)
  tok = train_runs.tokenizer(tmp_path_factory)
  environ = train_runs.env(tmp_path_factory, devices=4)
  address = f"127.0.0.1:{train_runs.free_port()}"
  procs = []
  for pid in range(2):
    cmd = train_runs.train_command(tmp_path / "w", synthetic_tiny, tok, "--config.train.grad_accum_steps=2",
                                   "--config.train.checkpoint_every=8",
                                   f"--config.distributed.coordinator_address={address}",
                                   "--config.distributed.num_processes=2", f"--config.distributed.process_id={pid}")
    procs.append(subprocess.Popen(cmd, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
  try:
    outputs = [p.communicate(timeout=900)[0] for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for pid, (p, out) in enumerate(zip(procs, outputs)):
    assert p.returncode == 0, f"process {pid} exited {p.returncode}:\n{out[-4000:]}"
  logged = train_runs.metrics(tmp_path / "w")  # written by process 0
  assert [m["step"] for m in logged] == [m["step"] for m in reference]
  for key in ("loss", "lm", "emotion", "au"):
    np.testing.assert_allclose([m[key] for m in logged], [m[key] for m in reference], atol=1e-5, rtol=0,
                               err_msg=key)
  results = json.loads((tmp_path / "w" / "results.json").read_text())
  assert results["steps"] == train_runs.STEPS and "experts" not in results  # train.expert_contributions=False


def test_distributed_settings_from_config_or_environment():
  cfg = cli.load_config(["--config", "configs/synthetic.py:tiny"])
  assert distributed.settings(cfg.distributed, environ={}) is None  # one process: nothing to join
  env = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}
  assert distributed.settings(cfg.distributed, environ=env) == {
      "coordinator_address": "10.0.0.1:1234", "num_processes": 4, "process_id": 3}
  with cfg.unlocked():
    cfg.distributed.auto_detect = True
  assert distributed.settings(cfg.distributed, environ={}) == {
      "coordinator_address": None, "num_processes": None, "process_id": None}  # JAX asks the cluster
  bad = cli.load_config(["--config", "configs/synthetic.py:tiny", "--config.distributed.coordinator_address=h:1",
                         "--config.distributed.num_processes=2"])
  with pytest.raises(distributed.DistributedError, match="process_id"):
    distributed.settings(bad.distributed, environ={})


def test_batch_that_does_not_split_is_named():
  cfg = cli.load_config(["--config", "configs/synthetic.py:tiny", "--config.train.batch_size=12",
                         "--config.train.grad_accum_steps=2"])
  with pytest.raises(ValueError, match="batch_size=12 .* grad_accum_steps=2 .* multiple of 8"):
    trainer.check_batch(cfg, sharding.make_mesh(cfg.mesh))
