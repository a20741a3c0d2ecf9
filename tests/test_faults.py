"""Recovering from damaged files, without a training run (issue 15, items 6, 7 and 13)."""

import glob
import os
import time

import grain
import jax
import jax.numpy as jnp
import ml_collections
import pytest

from deft_jax.train import checkpoint, metrics_log, trainer


def _saved(workdir, steps=(1, 2)):
  it = iter(grain.MapDataset.range(100).to_iter_dataset())
  cfg = ml_collections.ConfigDict({"a": 1})
  mngr = checkpoint.manager(str(workdir), 3)
  for step in steps:
    next(it)
    checkpoint.save(mngr, step, {"w": jnp.arange(1000.0) * step}, it, cfg)
  mngr.wait_until_finished()
  return cfg


def _restore(workdir):
  it = iter(grain.MapDataset.range(100).to_iter_dataset())
  abstract = {"w": jax.ShapeDtypeStruct((1000,), jnp.float32, sharding=jax.sharding.SingleDeviceSharding(jax.devices()[0]))}
  return checkpoint.restore_latest_good(checkpoint.manager(str(workdir), 3), abstract, it), it


def test_truncated_array_file_falls_back_to_the_previous_checkpoint(tmp_path, capsys):
  _saved(tmp_path)
  data = max(glob.glob(str(tmp_path / "checkpoints" / "2" / "state" / "**" / "d" / "*"), recursive=True),
             key=os.path.getsize)
  with open(data, "r+b") as f:
    f.truncate(100)
  (state, step), it = _restore(tmp_path)
  assert step == 1 and float(state["w"][1]) == 1.0 and next(it) == 1  # the data position of step 1
  err = capsys.readouterr().err
  assert f"warning: checkpoint {tmp_path / 'checkpoints' / '2'} cannot be restored" in err
  assert (tmp_path / "checkpoints.unreadable" / "2").is_dir() and not (tmp_path / "checkpoints" / "2").exists()


def test_the_step_of_a_set_aside_checkpoint_can_be_saved_again(tmp_path):
  cfg = _saved(tmp_path)
  (tmp_path / "checkpoints" / "2" / "state" / "_METADATA").write_text("")
  (_, step), it = _restore(tmp_path)
  assert step == 1
  mngr = checkpoint.manager(str(tmp_path), 3)
  checkpoint.save(mngr, 2, {"w": jnp.zeros(1000)}, it, cfg)
  mngr.wait_until_finished()
  assert mngr.all_steps() == [1, 2]


def test_no_good_checkpoint_names_each(tmp_path):
  _saved(tmp_path)
  for step in (1, 2):
    (tmp_path / "checkpoints" / str(step) / "state" / "_METADATA").write_text("")
  with pytest.raises(checkpoint.CheckpointError, match=r"checkpoints/2 \(JSONDecodeError.*checkpoints/1 \(JSONDecodeError"):
    _restore(tmp_path)


def test_no_checkpoint_is_a_fresh_run(tmp_path):
  assert _restore(tmp_path)[0] is None


def test_torn_last_metrics_line_is_dropped_with_a_warning(tmp_path, capsys):
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n{"step": 3, "lo')
  trainer.trim_metrics(str(tmp_path), 2)
  assert path.read_text() == '{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n'
  assert "metrics.jsonl line 3 is torn" in capsys.readouterr().err


def test_a_bad_line_before_the_last_is_named(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 1}\n{"st\n{"step": 3}\n')
  with pytest.raises(metrics_log.LogError, match="metrics.jsonl line 2: not JSON"):
    metrics_log.read(str(path))


def test_train_seconds_add_up_across_resumes(tmp_path):
  now = time.time()
  trainer.TrainClock(str(tmp_path), start=now - 30.0).record(4)  # 30 s to the checkpoint of step 4
  resumed = trainer.TrainClock(str(tmp_path), start=now - 5.0)  # then killed; resumed 5 s ago
  resumed.resume(4)
  assert 35.0 <= resumed.total() < 36.5
  fresh = trainer.TrainClock(str(tmp_path), start=now)
  fresh.resume(0)
  assert fresh.total() < 1.5
