"""`deft-jax sweep`: the grid and LOSO folds of configs/sweep_tiny.py, its table, and restarts."""

import csv
import json
import os

import numpy as np
import pytest

import train_runs
from deft_jax import cli
from deft_jax.eval import log as log_lib, metrics
from deft_jax.data import selection
from deft_jax.train import sweep, trainer

pytestmark = pytest.mark.slow  # trains, restores or runs subprocess jobs: minutes on 2 cores


def _config(synthetic_tiny, *extra):
  return cli.load_config(["--config", "configs/sweep_tiny.py",
                          f"--config.data.data_dir={train_runs.data_root(synthetic_tiny)}", *extra])


def test_grid_and_folds(synthetic_tiny):
  cfg = _config(synthetic_tiny)
  plan = sweep.runs(cfg)
  assert [r["dir"] for r in plan] == ["full__seed0__fold0", "full__seed0__fold1", "full__seed1__fold0",
                                      "full__seed1__fold1"]
  assert [r["config"]["seed"] for r in plan] == [0, 0, 1, 1]
  folds = [set(r["config"]["data.holdout_subjects"]) for r in plan[:2]]
  assert folds[0] and folds[1] and not folds[0] & folds[1]
  assert folds[0] | folds[1] == {f"{d}_s0{i}" for d in ("casme2", "samm", "smic") for i in range(4)}
  assert len(sweep.runs(_config(synthetic_tiny, "--config.loso_folds=-1"))) == 2 * 12
  with pytest.raises(sweep.SweepError, match="model.motion.enabeld"):
    sweep.configure(cfg, {"model.motion.enabeld": False})
  with pytest.raises(sweep.SweepError, match="loso_folds=99"):
    sweep.runs(_config(synthetic_tiny, "--config.loso_folds=99"))
  with pytest.raises(ValueError, match="holdout_subjects: no labelled clips of \\['nobody'\\]"):
    selection.select_records(sweep.configure(cfg, {"data.holdout_subjects": ("nobody",)}), synthetic_tiny)
  # The ablation grid of the project is in the same format: 13 points x 3 seeds.
  ablations = sweep.runs(cli.load_config(["--config", "configs/ablations.py:tiny"]))
  assert len(ablations) == 39 and ablations[3]["dir"] == "no_structure__seed0"


def test_sweep_writes_table_pools_loso_and_skips_finished_runs(tmp_path_factory, tmp_path, synthetic_tiny,
                                                              monkeypatch):
  tok = train_runs.tokenizer(tmp_path_factory)
  cmd = train_runs.train_command(tmp_path, synthetic_tiny, tok, command="sweep", config="configs/sweep_tiny.py")
  train_runs.check(train_runs.run(cmd, train_runs.env(tmp_path_factory), timeout=600))
  with open(tmp_path / "results.csv") as f:
    rows = list(csv.DictReader(f))
  assert [(r["seed"], r["fold"]) for r in rows] == [
      ("0", "fold0"), ("0", "fold1"), ("1", "fold0"), ("1", "fold1"),
      ("0", "pooled (2 folds)"), ("1", "pooled (2 folds)"), ("mean of 2", "pooled")]
  assert all(r["point"] == "full" and 0 <= float(r["uf1"]) <= 1 for r in rows)
  assert int(rows[4]["num_test_clips"]) == int(rows[0]["num_test_clips"]) + int(rows[1]["num_test_clips"]) == 30
  # The LOSO row is one confusion matrix over both folds' logs, not a mean of fold scores.
  pooled = log_lib.read(tmp_path / "full__seed0__loso" / "predictions.csv")
  cm = metrics.confusion(pooled.truth, pooled.prediction, len(pooled.classes))
  assert float(rows[4]["uf1"]) == pytest.approx(metrics.scores(cm)["uf1"], abs=1e-4)
  uf1 = [float(rows[4]["uf1"]), float(rows[5]["uf1"])]
  assert float(rows[6]["uf1"]) == pytest.approx(np.mean(uf1), abs=1e-4)
  assert float(rows[6]["uf1_std"]) == pytest.approx(np.std(uf1, ddof=1), abs=1e-4)
  assert (tmp_path / "results.md").read_text().count("\n") == 2 + len(rows)
  assert (tmp_path / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

  # A restart trains only what is unfinished.
  finished = (tmp_path / "full__seed1__fold1" / "results.json").read_text()
  os.remove(tmp_path / "full__seed1__fold1" / "results.json")
  trained = []

  def fake_train(cfg, workdir):
    trained.append((os.path.basename(workdir), cfg.seed, tuple(cfg.data.holdout_subjects)))
    with open(os.path.join(workdir, "results.json"), "w") as f:
      f.write(finished)
    return json.loads(finished)

  monkeypatch.setattr(trainer, "train", fake_train)
  again = sweep.run(_config(synthetic_tiny), str(tmp_path))
  assert [t[:2] for t in trained] == [("full__seed1__fold1", 1)]
  assert set(trained[0][2]) == set(sweep.runs(_config(synthetic_tiny))[3]["config"]["data.holdout_subjects"])
  np.testing.assert_allclose([r["uf1"] for r in again], [float(r["uf1"]) for r in rows], atol=1e-4)


def test_two_stage_sweep_trains_each_points_stage1_once_and_starts_every_seed_from_it(tmp_path, monkeypatch):
  cfg = cli.load_config(["--config", "configs/ablations.py:two_stage"])
  with cfg.unlocked():
    cfg.sweep = tuple(p for p in cfg.sweep if p["name"] in ("full", "no_texture"))
    cfg.seeds = (0, 1)
  trained = []

  def fake_train(run_cfg, workdir):
    trained.append({"dir": os.path.basename(workdir), "seed": run_cfg.seed, "lora": run_cfg.model.lora.enabled,
                    "texture": run_cfg.model.texture.enabled, "init_from": run_cfg.train.init_from,
                    "frozen": tuple(run_cfg.optim.frozen)})
    os.makedirs(workdir, exist_ok=True)
    results = {"uf1": 0.5 + 0.1 * len(trained), "uar": 0.5, "accuracy": 0.5, "num_test_clips": 1}
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump(results, f)
    return results

  monkeypatch.setattr(trainer, "train", fake_train)
  sweep.run(cfg, str(tmp_path))
  assert [t["dir"] for t in trained] == ["full__stage1", "full__seed0", "full__seed1",
                                         "no_texture__stage1", "no_texture__seed0", "no_texture__seed1"]
  for t in trained:
    stage1 = t["dir"].endswith("__stage1")
    assert t["lora"] is not stage1 and (t["frozen"] == (r"^llm/",)) is stage1, t
    assert t["texture"] is t["dir"].startswith("full"), t  # the ablation holds in both stages
    point = t["dir"].split("__")[0]
    assert t["init_from"] == ("" if stage1 else str(tmp_path / f"{point}__stage1")), t
  # Stage-1 runs are not rows of the table, and a restart trains nothing again.
  with open(tmp_path / "results.csv") as f:
    assert not any("stage1" in row for row in f)
  trained.clear()
  sweep.run(cfg, str(tmp_path))
  assert not trained
  with pytest.raises(sweep.SweepError, match="config.stage1"):
    with cfg.unlocked():
      cfg.stage1 = ("model.lora.enabled",)
    sweep.runs(cfg)
