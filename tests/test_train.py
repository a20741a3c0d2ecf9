"""The training path: sharded step on 8 devices, checkpoints, the tiny job end to end, bad input."""

import json
import os
import shutil

import grain
import jax
import numpy as np
import pytest
from flax import traverse_util

from deft_jax import cli
from deft_jax.data import pipeline, tokenizer as tokenizer_lib
from deft_jax.train import checkpoint, sharding, state as state_lib, trainer

pytestmark = pytest.mark.slow  # trains, restores or runs subprocess jobs: minutes on 2 cores


@pytest.fixture(scope="module")
def setup(tmp_path_factory, synthetic_tiny):
  cfg = cli.load_config(["--config", "configs/synthetic.py:tiny", "--config.mesh.data=2",
                         "--config.mesh.fsdp=2", "--config.mesh.tensor=2"])
  tok_dir = tmp_path_factory.mktemp("tok") / "tokenizer"
  tokenizer_lib.train_tokenizer(tok_dir, cfg.data.tokenizer_vocab)
  tok = tokenizer_lib.load_tokenizer(tok_dir)
  model = state_lib.make_model(cfg, tok)
  mesh = sharding.make_mesh(cfg.mesh)
  source = synthetic_tiny.as_data_source()["train"]
  pre = pipeline.Preprocess(tok, cfg.data.scheme, cfg.data.max_text_len, train=True)
  batch = next(iter(pipeline.dataset(source, pre, cfg.train.batch_size, seed=0, train=True)))
  return cfg, model, mesh, batch


def _flat(tree):
  return {k: np.asarray(v) for k, v in traverse_util.flatten_dict(tree, sep="/").items()}


def test_train_step_on_8_devices_moves_only_trainable_weights(setup):
  cfg, model, mesh, batch = setup
  assert mesh.devices.size == 8 and dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}
  state, shardings = state_lib.create_state(cfg, model, mesh, 10, jax.random.key(0))
  q = state.frozen["llm"]["layers"]["self_attn"]["q_proj"]["kernel"]
  assert q.sharding.spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor")  # scanned: layers first
  assert not any(k.startswith("llm/layers/") and "lora_" not in k for k in _flat(state.params))
  before = _flat(state_lib.all_params(state))
  step = trainer.make_train_step(model, dict(cfg.loss), shardings, mesh)
  losses = []
  for i in range(3):
    state, m = step(state, sharding.global_batch(batch, mesh), jax.random.key(i))
    losses.append(float(m["loss"]))
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
  after = _flat(state_lib.all_params(state))
  frozen = [k for k in before if k.startswith("llm/layers/") and "lora_" not in k]
  moved = [k for k in before if "lora_b" in k or k.startswith("motion/")]
  assert frozen and moved
  for k in frozen:
    np.testing.assert_array_equal(before[k], after[k], err_msg=k)
  assert all(not np.array_equal(before[k], after[k]) for k in moved)


def test_checkpoint_restores_onto_another_mesh(setup, tmp_path):
  cfg, model, mesh, batch = setup
  state, shardings = state_lib.create_state(cfg, model, mesh, 10, jax.random.key(1))
  it = iter(grain.MapDataset.range(40).to_iter_dataset())
  next(it)
  mngr = checkpoint.manager(str(tmp_path), keep=2)
  checkpoint.save(mngr, 5, state_lib.checkpointed(state), it, cfg)
  mngr.wait_until_finished()

  other = sharding.make_mesh({"data": 1, "fsdp": 4, "tensor": 2})
  fresh, other_shardings = state_lib.create_state(cfg, model, other, 10, jax.random.key(2))
  abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), fresh, other_shardings)
  it2 = iter(grain.MapDataset.range(40).to_iter_dataset())
  restored = fresh.replace(**checkpoint.restore(mngr, 5, state_lib.checkpointed(abstract), it2))
  for k, v in _flat(state.params).items():
    np.testing.assert_array_equal(v, _flat(restored.params)[k])
  q = restored.params["llm"]["layers"]["self_attn"]["q_proj"]["lora_a"]
  assert q.sharding.mesh.shape == other.shape
  assert next(it2) == 1  # the data iterator resumes where it was saved


def test_tiny_job_end_to_end_and_resume(tmp_path, synthetic_tiny, capsys):
  data_dir = os.path.dirname(os.path.dirname(os.path.dirname(synthetic_tiny.data_dir)))
  args = ["train", "--config", "configs/synthetic.py:tiny", "--workdir", str(tmp_path / "w"),
          f"--config.data.data_dir={data_dir}"]
  assert cli.main(args) == 0
  results = json.loads((tmp_path / "w" / "results.json").read_text())
  for key in ("uf1", "uar", "accuracy", "num_test_clips", "train_seconds", "examples"):
    assert key in results
  assert 0 <= results["uf1"] <= 1 and results["num_test_clips"] == len(synthetic_tiny.as_data_source()["test"])
  assert results["examples"][0]["clip_id"] and "text" in results["examples"][0]
  rows = (tmp_path / "w" / "predictions.csv").read_text().splitlines()
  assert rows[0].startswith("dataset,subject,clip,truth,prediction") and len(rows) == results["num_test_clips"] + 1
  logged = [json.loads(l) for l in (tmp_path / "w" / "metrics.jsonl").read_text().splitlines()]
  assert [l["step"] for l in logged] == [2, 4]
  assert os.listdir(tmp_path / "w" / "tensorboard")
  # A longer schedule resumes from the step-4 checkpoint instead of starting over.
  assert cli.main(args + ["--config.train.steps=6"]) == 0
  logged = [json.loads(l) for l in (tmp_path / "w" / "metrics.jsonl").read_text().splitlines()]
  assert [l["step"] for l in logged] == [2, 4, 6]


def test_workdir_that_is_a_file(tmp_path, capsys):
  f = tmp_path / "results"
  f.write_text("keep me")
  assert cli.main(["train", "--config", "configs/synthetic.py:tiny", "--workdir", str(f)]) == 2
  err = capsys.readouterr().err
  assert str(f) in err and "is a file" in err and len(err.strip().splitlines()) == 1
  assert f.read_text() == "keep me"


def test_unknown_config_field_exits_cleanly(tmp_path, capsys):
  assert cli.main(["train", "--config", "configs/synthetic.py:tiny", "--workdir", str(tmp_path),
                   "--config.model.lora.rnak=4"]) == 2
  assert "model.lora.rnak" in capsys.readouterr().err


def _copy_dataset(synthetic_tiny, tmp_path):
  root = os.path.dirname(os.path.dirname(os.path.dirname(synthetic_tiny.data_dir)))
  shutil.copytree(root, tmp_path / "tfds")
  return tmp_path / "tfds", tmp_path / "tfds" / os.path.relpath(synthetic_tiny.data_dir, root)


def test_corrupt_dataset_is_named_and_kept(tmp_path, synthetic_tiny, capsys):
  root, version_dir = _copy_dataset(synthetic_tiny, tmp_path)
  shard = sorted(p for p in os.listdir(version_dir) if "train.array_record" in p)[0]
  with open(version_dir / shard, "r+b") as f:
    f.truncate(100)
  files = sorted(os.listdir(version_dir))
  assert cli.main(["train", "--config", "configs/synthetic.py:tiny", "--workdir", str(tmp_path / "w"),
                   f"--config.data.data_dir={root}"]) == 2
  err = capsys.readouterr().err
  assert str(version_dir) in err and len(err.strip().splitlines()) == 1
  assert sorted(os.listdir(version_dir)) == files


def test_half_built_dataset_is_named_and_kept(tmp_path, synthetic_tiny, capsys):
  root, version_dir = _copy_dataset(synthetic_tiny, tmp_path)
  os.remove(version_dir / "dataset_info.json")
  files = sorted(os.listdir(version_dir))
  assert cli.main(["train", "--config", "configs/synthetic.py:tiny", "--workdir", str(tmp_path / "w"),
                   f"--config.data.data_dir={root}"]) == 2
  err = capsys.readouterr().err
  assert str(version_dir) in err and "no finished dataset" in err
  assert sorted(os.listdir(version_dir)) == files
