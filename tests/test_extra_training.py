"""folds.extra: another corpus's clips in every fold's training set, never held out or scored
(the lever the learning curve over subjects points at: more subjects)."""

import json

import numpy as np
import pytest

import test_composite_builder as fake
from configs import composite_flow
from deft_jax import cli
from deft_jax.data import build
from deft_jax.eval import log as log_lib
from deft_jax.train import fold_data, folds, loso
from train_runs import data_root


def test_extra_clips_train_in_every_fold_and_are_never_scored():
  rng = np.random.default_rng()
  subjects = rng.permutation(np.repeat(list("abcdef"), 5))
  plan = folds.plan(subjects, "validation", num_folds=3, val_groups=2, seed=int(rng.integers(100)))
  more = folds.with_extra_training(plan, 7)
  assert more.train.shape == more.scored.shape == more.test.shape == (plan.num_folds, 37)
  np.testing.assert_array_equal(more.train[:, :30], plan.train)
  np.testing.assert_array_equal(more.scored[:, :30], plan.scored)
  assert more.train[:, 30:].all() and not more.scored[:, 30:].any() and not more.test[:, 30:].any()


def _clips(n, dataset, **shapes):
  arrays = {"flow": np.zeros((n, 28, 28, 3), np.float32), "label": np.arange(n, dtype=np.int32) % 3}
  arrays.update({k: np.zeros((n, *s), np.float32) for k, s in shapes.items()})
  return fold_data.Clips(arrays, tuple(f"{dataset}_s{i % 2}" for i in range(n)), tuple(f"c{i}" for i in range(n)),
                         (dataset,) * n)


def test_join_appends_clips_field_by_field_and_names_a_field_that_differs():
  both = fold_data.join(_clips(4, "samm"), _clips(3, "casme3"))
  assert len(both) == 7 and both.arrays["flow"].shape == (7, 28, 28, 3)
  assert both.dataset == ("samm",) * 4 + ("casme3",) * 3 and both.clip[4] == "c0"
  with pytest.raises(ValueError, match=r"folds.extra.data=x: field 'aus' has shape \(5,\) per clip; expected \(17,\)"):
    fold_data.join(_clips(4, "samm", aus=(17,)), _clips(3, "x", aus=(5,)), "folds.extra.data=x")
  fields = r"its clips have fields \['flow', 'label'\]; expected \['aus', 'flow', 'label'\]"
  with pytest.raises(ValueError, match=fields):
    fold_data.join(_clips(4, "samm", aus=(17,)), _clips(3, "x"))
  # Another build of the corpus under test (e.g. megc2019_composite/f112 beside f112_canonical).
  with pytest.raises(ValueError, match=r"folds.extra.data=x: 3 of its clips are clips under test, e.g. samm/c0"):
    fold_data.join(_clips(4, "samm"), _clips(3, "samm"), "folds.extra.data=x")


def test_the_dataset_under_test_is_refused_as_extra_training_before_a_workdir_is_made(tmp_path):
  cfg = composite_flow.get_config("tiny")
  cfg.folds.extra.data = cfg.data.name
  cfg.data.manual_dir = str(tmp_path / "no_such_folder")
  with pytest.raises(ValueError, match=r"is the dataset under test .* would train the folds that score them"):
    loso.run(cfg, str(tmp_path / "work"))
  assert not (tmp_path / "work").exists()


@pytest.mark.slow
def test_composite_job_trains_on_an_extra_corpus_and_scores_only_its_own_clips(tmp_path, synthetic_tiny):
  manual, root = tmp_path / "manual", data_root(synthetic_tiny)
  fake.write_layout(manual)
  common = ["train", "--config", "configs/composite_flow.py:tiny", f"--config.data.manual_dir={manual}",
            f"--config.data.data_dir={root}", "--config.data.name=megc2019_composite/f56",
            "--config.folds.num_folds=2"]
  assert cli.main([*common, "--workdir", str(tmp_path / "alone")]) == 0
  assert cli.main([*common, "--workdir", str(tmp_path / "work"), "--config.folds.extra.data=synthetic_me/tiny"]) == 0
  extra = len(fold_data.load(build.prepare("synthetic_me/tiny", root).as_data_source(split="train+test"),
                             "composite"))
  for model in ("", "peers/ststnet/"):
    results = json.loads((tmp_path / "work" / model / "results.json").read_text())
    alone = json.loads((tmp_path / "alone" / model / "results.json").read_text())
    assert results["extra_training"] == {"data": "synthetic_me/tiny", "split": "train+test", "clips": extra}
    assert results["num_test_clips"] == alone["num_test_clips"] == len(fake.ROWS)
    assert results["steps_per_epoch"] > alone["steps_per_epoch"]  # the folds drew from more clips
    log = log_lib.read(tmp_path / "work" / model / "predictions.csv")
    assert set(log.dataset) == {"casme2", "smic", "samm"} and len(log) == len(fake.ROWS)
