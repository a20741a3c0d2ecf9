"""`deft-jax report` on workdirs written here by hand (no training): every figure is a valid
PNG linked from README.md, the numbers agree with scikit-learn, and missing parts are said.

The report of a trained workdir (expert contributions measured from its checkpoint) is
tested in test_predict.py, which trains one.
"""

import json

import cv2
import numpy as np
import pytest
from sklearn import metrics as skm

from deft_jax import cli
from deft_jax.data import answers
from deft_jax.eval import log
from deft_jax.facs import catalogue, emotions

CLASSES = emotions.SCHEMES["composite"]


def _workdir(path, rng, full=True):
  n = 90
  datasets = rng.choice(["smic", "casme2", "samm"], n)
  truth = rng.integers(0, 3, n)
  pred = np.where(rng.random(n) < 0.6, truth, rng.integers(0, 3, n))
  path.mkdir()
  log.write(path / "predictions.csv", CLASSES, datasets, [f"s{i % 9}" for i in range(n)],
            [f"c{i}" for i in range(n)], truth, pred)
  results = {"classes": list(CLASSES), "scheme": "composite", "num_test_clips": n, "num_test_subjects": 9, "steps": 6}
  if full:
    results["experts"] = {e: {"mean_drop": d, "mean_drop_by_class": {c: d / 2 for c in CLASSES},
                              "uf1_without": 0.4, "uar_without": 0.4}
                          for e, d in (("structure", 0.1), ("texture", -0.02), ("motion", 0.2))}
    # A resumed run appends step 4 again; the later line wins.
    rows = [{"step": s, "loss": 5.0 / s, "lm": 4.0 / s, "emotion": 1.0 / s, "au": 0.5, "grad_norm": 2.0}
            for s in (2, 4, 4, 6)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    records = []
    for i in range(12):
      aus = [6, 12] if i % 2 else [4]
      cues = tuple(answers.Cue(catalogue.au(a).region, catalogue.au(a).motion, a) for a in aus)
      text = answers.format_answer(answers.Answer(cues, CLASSES[i % 2], "cues.")) if i % 3 else "broken"
      records.append({"clip_id": f"c{i}", "truth": CLASSES[i % 3], "head": CLASSES[0], "labelled_aus": [4, 12],
                      "text": text})
    (path / "answers.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
  (path / "results.json").write_text(json.dumps(results))
  return truth, pred


def _png(path):
  image = cv2.imread(str(path))
  assert image is not None, path
  assert image.shape[0] >= 200 and image.shape[1] >= 300, (path, image.shape)


def test_full_report(tmp_path, capsys):
  truth, pred = _workdir(tmp_path / "w", np.random.default_rng(0))
  assert cli.main(["report", str(tmp_path / "w")]) == 0
  assert str(tmp_path / "w" / "report" / "README.md") in capsys.readouterr().out
  folder = tmp_path / "w" / "report"
  readme = (folder / "README.md").read_text()
  for name in ("confusion.png", "curves.png", "au_cues.png", "experts.png"):
    _png(folder / name)
    assert f"]({name})" in readme
  uf1, uar = skm.f1_score(truth, pred, average="macro"), skm.balanced_accuracy_score(truth, pred)
  assert f"| full | {uf1:.4f} | {uar:.4f} |" in readme
  assert "3 logged steps, last step 6" in readme
  assert ("12 answers generated for 90 test clips (set train.generate_examples=-1 to answer every one), "
          "4 did not parse, 8 reasoned against their own cues or emotion") in readme and "| AU12 |" in readme
  experts = json.loads((folder / "experts.json").read_text())
  assert experts["source"].startswith("from results.json") and experts["experts"]["motion"]["mean_drop"] == 0.2


def test_report_says_what_is_missing(tmp_path):
  _workdir(tmp_path / "w", np.random.default_rng(1), full=False)
  assert cli.main(["report", str(tmp_path / "w"), "--out", str(tmp_path / "r")]) == 0
  readme = (tmp_path / "r" / "README.md").read_text()
  assert "No metrics.jsonl" in readme and "No generated answers" in readme and "Not available" in readme
  assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["README.md", "confusion.png"]
  _png(tmp_path / "r" / "confusion.png")


@pytest.mark.parametrize("damage, message", [
    ("results.json", "no results.json"),
    ("predictions.csv", "row 2: field 'truth': unknown class 'joy'"),
])
def test_broken_workdirs_are_named(tmp_path, capsys, damage, message):
  _workdir(tmp_path / "w", np.random.default_rng(2), full=False)
  if damage == "results.json":
    (tmp_path / "w" / "results.json").unlink()
  else:
    (tmp_path / "w" / "predictions.csv").write_text("dataset,subject,clip,truth,prediction\nsmic,s,c,joy,positive\n")
  assert cli.main(["report", str(tmp_path / "w")]) == 2
  err = capsys.readouterr().err.strip()
  assert message in err and str(tmp_path / "w") in err and len(err.splitlines()) == 1


def test_a_damaged_checkpoint_does_not_stop_the_report(tmp_path, capsys):
  """Issue 15, item 6: an unreadable checkpoint ended `report` in a traceback naming no file."""
  import grain
  import jax.numpy as jnp
  import ml_collections
  from deft_jax.train import checkpoint
  _workdir(tmp_path / "w", np.random.default_rng(0))
  mngr = checkpoint.manager(str(tmp_path / "w"), 1)
  checkpoint.save(mngr, 1, {"w": jnp.zeros(3)}, iter(grain.MapDataset.range(3).to_iter_dataset()),
                  ml_collections.ConfigDict({"a": 1}))
  mngr.wait_until_finished()
  (tmp_path / "w" / "checkpoints" / "1" / "config" / "metadata").write_text("")
  assert cli.main(["report", str(tmp_path / "w")]) == 0
  err = capsys.readouterr().err
  assert f"warning: the checkpoint in {tmp_path / 'w' / 'checkpoints'} could not be read" in err
  readme = (tmp_path / "w" / "report" / "README.md").read_text()
  assert "from results.json (the checkpoint in" in readme and "| motion | 0.2000 |" in readme
