"""Two-stage training from the config files, and the ablation grid as config overrides."""

import json
import os

import jax
import numpy as np
import pytest
from flax import traverse_util

from deft_jax import cli
from deft_jax.data import tokenizer as tokenizer_lib
from deft_jax.train import init_from, sharding, state as state_lib, sweep

pytestmark = pytest.mark.slow  # trains, restores or runs subprocess jobs: minutes on 2 cores


def _flat(tree):
  return {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(tree).items()}


def test_stage1_then_stage2_from_its_checkpoint(tmp_path, synthetic_tiny):
  data_dir = os.path.dirname(os.path.dirname(os.path.dirname(synthetic_tiny.data_dir)))
  stage1, stage2 = tmp_path / "stage1", tmp_path / "stage2"
  common = [f"--config.data.data_dir={data_dir}", "--config.train.steps=2", "--config.train.log_every=1",
            "--config.train.checkpoint_every=2", "--config.train.generate_examples=0",
            "--config.train.expert_contributions=False"]
  assert cli.main(["train", "--config", "configs/stage1_synthetic.py:tiny", "--workdir", str(stage1)] + common) == 0
  logged = [json.loads(l) for l in (stage1 / "metrics.jsonl").read_text().splitlines()]
  assert "decorrelation" in logged[-1] and np.isfinite(logged[-1]["loss"])

  # Stage 1 froze the whole LLM: its checkpoint holds what trained (experts, projectors, heads)
  # and nothing of the LLM, whose frozen weights come back from the seed.
  cfg1 = cli.load_config(["--config", "configs/stage1_synthetic.py:tiny"])
  tok = tokenizer_lib.load_tokenizer(stage1 / "tokenizer")
  mesh = sharding.make_mesh(cfg1.mesh)
  fresh1, _ = state_lib.create_state(cfg1, state_lib.make_model(cfg1, tok), mesh, 2, jax.random.key(cfg1.seed))
  saved = {"/".join(k): v for k, v in init_from.read_params(str(stage1)).items()}
  assert set(saved) == set(_flat(fresh1.params)) and not any(k.startswith("llm/") for k in saved)
  assert not np.array_equal(_flat(fresh1.params)["motion/au_head/kernel"], saved["motion/au_head/kernel"])

  # Stage 2's state takes every matching param from stage 1; LoRA (and the LLM's embeddings and
  # final norm, trainable in stage 2) start from their seeded init.
  args2 = ["--config", "configs/stage2_synthetic.py:tiny", f"--config.train.init_from={stage1}"]
  cfg2 = cli.load_config(args2)
  model2 = state_lib.make_model(cfg2, tok)
  fresh2, _ = state_lib.create_state(cfg2, model2, mesh, 2, jax.random.key(7))
  started, summary = init_from.initialise(cfg2, fresh2, model2.config, log=lambda _: None)
  flat = _flat(started.params)
  assert any("lora_" in k for k in flat) and summary["restored"] == len(saved) and not summary["unused"]
  for k, v in flat.items():
    np.testing.assert_array_equal(v, saved[k] if k in saved else _flat(fresh2.params)[k], err_msg=k)
  assert set(flat) - set(saved) == {k for k in flat if k.startswith("llm/")}  # LoRA, embeddings, final norm
  assert jax.tree.map(lambda x: x.sharding, started.params) == jax.tree.map(lambda x: x.sharding, fresh2.params)

  # And the stage-2 job runs from it, end to end.
  assert cli.main(["train", "--workdir", str(stage2)] + args2 + common[:1] + common[1:]) == 0
  assert json.loads((stage2 / "results.json").read_text())["steps"] == 2


def test_init_from_a_path_without_checkpoint(tmp_path):
  with pytest.raises(init_from.InitFromError, match="no checkpoint"):
    init_from.read_params(str(tmp_path))


def test_ablation_grid_points_apply_to_the_locked_config(tmp_path):
  cfg = cli.load_config(["--config", "configs/ablations.py:tiny"])
  assert cfg.is_locked and len(cfg.seeds) >= 3
  names = [p["name"] for p in cfg.sweep]
  assert len(set(names)) == len(names) and names[0] == "full" and not cfg.sweep[0]["overrides"]
  for expert in ("structure", "texture", "motion"):
    assert f"no_{expert}" in names
  for term in cfg.loss:
    assert any(p["overrides"] == {f"loss.{term}": 0.0} for p in cfg.sweep), term
  assert any(p["overrides"] == {"data.answers": "labels"} for p in cfg.sweep)
  assert len({p["overrides"].get("model.lora.rank") for p in cfg.sweep}) > 2
  tokenizer_lib.train_tokenizer(tmp_path / "tok", cfg.data.tokenizer_vocab)
  tok = tokenizer_lib.load_tokenizer(tmp_path / "tok")
  for point in cfg.sweep:
    run = sweep.configure(cfg, point["overrides"])
    assert run.is_locked
    for path, value in point["overrides"].items():
      node = run
      for p in path.split("."):
        node = node[p]
      assert node == value, (point["name"], path)
    model_config = state_lib.deft_config(run, tok)  # every point builds a model
    for expert in ("structure", "texture", "motion"):
      assert (model_config.expert(expert) is None) == (point["name"] == f"no_{expert}")
  with pytest.raises(sweep.SweepError, match="model.lora.rnak"):
    sweep.configure(cfg, {"model.lora.rnak": 4})
