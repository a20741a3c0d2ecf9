"""Grids of runs defined as data in the config file, each in its own workdir, and their table.

    deft-jax sweep --config configs/ablations.py --workdir DIR

Config fields beside the base job's (configs/ablations.py, configs/sweep_tiny.py):
  sweep       tuple of {"name": str, "overrides": {"a.b.c": value, ...}}: the points (ablations);
              each override replaces an existing field of the locked config. A product of
              axes is written in the config file with itertools.product.
  seeds       optional tuple of ints: every point runs once per seed (config.seed);
  sweep_only  optional tuple of point names: just those run and are tabulated (a new round of
              a search whose earlier rounds ran elsewhere); () or absent: every point;
  loso_folds  optional int. 0: no LOSO; -1: leave-one-subject-out, one fold per subject;
              k > 0: k folds of subjects (sorted, dealt round-robin). Every point (and seed)
              then runs once per fold with data.holdout_subjects set, on the pooled
              train + test splits.
  stage1      optional tuple of ("a.b.c", value) pairs that turn a point's job into its
              stage-1 job (configs/stage1_synthetic.overrides). Each point (and fold) then
              first trains stage 1 in DIR/<name>__stage1[__<fold>], with the point's own
              overrides and the config's seed, and every seed of the point starts from it
              (train.init_from): an expert switched off is off in both stages.
Each run trains in DIR/<name>[__seed<s>][__<fold>] and is skipped when its results.json
exists, so a restarted sweep goes on where it stopped (an unfinished run resumes from its own
checkpoint). DIR/results.csv and DIR/results.md list every run's overrides and scores; under
LOSO each point and seed also gets a row scored on ONE confusion matrix pooled over its folds
(deft_jax.eval.metrics; the pooled log and scores go to DIR/<name>[__seed<s>]__loso/); with
several seeds each point gets a mean and standard deviation over them (deft_jax.eval.aggregate).
DIR/results.png draws each point's UF1 per seed beside their mean, to read margins against the
seed spread.
"""

import csv
import json
import os
import re

import jax
import numpy as np

from deft_jax.data import build, selection
from deft_jax.eval import aggregate, log as log_lib, metrics, plots
from deft_jax.train import trainer

SCORES = ("uf1", "uar", "accuracy", "num_test_clips", "train_seconds")
SPREAD = ("uf1", "uar", "accuracy")


class SweepError(ValueError):
  pass


def _name(overrides: dict) -> str:
  return re.sub(r"[^A-Za-z0-9._=,+-]+", "_", ",".join(f"{k}={v}" for k, v in overrides.items()) or "base")


def points(cfg) -> list[tuple[str, dict]]:
  """(name, overrides) of every point of config.sweep."""
  if "sweep" not in cfg:
    raise SweepError("the config has no `sweep` field (see deft_jax/train/sweep.py)")
  out = []
  for i, point in enumerate(cfg.sweep):
    point = dict(point)
    unknown = set(point) - {"name", "overrides"}
    if unknown:
      raise SweepError(f"config.sweep[{i}]: unknown keys {sorted(unknown)}; a point has 'name' and 'overrides'")
    overrides = dict(point.get("overrides") or {})
    out.append((point.get("name") or _name(overrides), overrides))
  names = [n for n, _ in out]
  if not out:
    raise SweepError("config.sweep: no points")
  if len(set(names)) != len(names):
    raise SweepError(f"config.sweep: points share a name: {sorted({n for n in names if names.count(n) > 1})}")
  only = tuple(cfg.get("sweep_only", ()))
  unknown = sorted(set(only) - set(names))
  if unknown:
    raise SweepError(f"config.sweep_only: no point named {unknown}; the points are {names}")
  return [(n, o) for n, o in out if not only or n in only]


def folds(cfg) -> list[tuple[str, tuple[str, ...]]]:
  """(fold name, held-out subjects) of the LOSO protocol, [] without one."""
  k = cfg.get("loso_folds", 0)
  if k == 0:
    return []
  builder = build.prepare(cfg.data.name, selection.data_dir(cfg), cfg.data.manual_dir or None)
  subjects = selection.loso_subjects(cfg, builder)
  if k == -1:
    return [(s, (s,)) for s in subjects]
  if not 0 < k <= len(subjects):
    raise SweepError(f"config.loso_folds={k}: use 0, -1 or 1..{len(subjects)} (the subjects)")
  return [(f"fold{i}", tuple(subjects[i::k])) for i in range(k)]


def configure(cfg, overrides: dict):
  """A copy of the locked `cfg` with "a.b.c" fields set (an unknown field is an error)."""
  out = cfg.copy_and_resolve_references()
  for field, value in overrides.items():  # one at a time, so an error names its field
    try:
      out.update_from_flattened_dict({field: value})
    except (KeyError, AttributeError, TypeError) as e:
      raise SweepError(f"config.sweep: cannot set {field}={value!r} ({type(e).__name__}: {e})") from None
  return out


def stage1_overrides(cfg) -> dict:
  """config.stage1 as a dict ({} for single-stage sweeps)."""
  pairs = cfg.get("stage1", ())
  try:
    return {field: value for field, value in pairs}
  except (TypeError, ValueError):
    raise SweepError(f"config.stage1: expected ('a.b.c', value) pairs, got {pairs!r}") from None


def runs(cfg) -> list[dict]:
  """Every run: point, overrides, seed, fold and its subjects, workdir name, full overrides, and
  the stage-1 run it starts from (None in a single-stage sweep)."""
  seeds = tuple(cfg.get("seeds", ()))
  fold_list = folds(cfg)
  first_stage = stage1_overrides(cfg)
  out = []
  for name, overrides in points(cfg):
    configure(cfg, overrides)  # fail on a bad field before anything trains
    if first_stage:
      configure(cfg, {**overrides, **first_stage})
    for seed in seeds or (None,):
      for fold, subjects in fold_list or [(None, ())]:
        group = name + (f"__seed{seed}" if seed is not None else "")
        held_out, in_fold = ({"data.holdout_subjects": subjects}, f"__{fold}") if fold else ({}, "")
        stage1 = None
        if first_stage:
          stage1 = {"dir": f"{name}__stage1{in_fold}", "config": {**overrides, **first_stage, **held_out}}
        out.append({"point": name, "overrides": overrides, "seed": seed, "fold": fold, "group": group,
                    "dir": group + in_fold, "stage1": stage1,
                    "config": {**overrides, **({"seed": seed} if seed is not None else {}), **held_out}})
  return out


def run(cfg, workdir: str) -> list[dict]:
  """Trains every unfinished run, then writes the table; returns its rows."""
  workdir = trainer.prepare_workdir(workdir)
  plan = runs(cfg)
  for i, r in enumerate(plan):
    overrides = r["config"]
    if r["stage1"]:
      stage1 = os.path.join(workdir, r["stage1"]["dir"])
      _train_unfinished(cfg, r["stage1"]["config"], stage1, f"sweep {i + 1}/{len(plan)}: {r['stage1']['dir']}")
      overrides = {**overrides, "train.init_from": stage1}
    _train_unfinished(cfg, overrides, os.path.join(workdir, r["dir"]), f"sweep {i + 1}/{len(plan)}: {r['dir']}")
  rows = [_row(r, _results(os.path.join(workdir, r["dir"]))) for r in plan]
  per_seed = {}  # the scores each (point, seed) is judged by: its run, or its pooled LOSO folds
  for group in dict.fromkeys(r["group"] for r in plan):
    members = [r for r in plan if r["group"] == group]
    if members[0]["fold"]:
      scored = pool(cfg, [os.path.join(workdir, r["dir"]) for r in members], os.path.join(workdir, f"{group}__loso"))
      rows.append(_row({**members[0], "fold": f"pooled ({len(members)} folds)"}, scored))
    else:
      scored = _results(os.path.join(workdir, members[0]["dir"]))
    per_seed.setdefault(members[0]["point"], []).append(scored)
  for name, results in per_seed.items():
    if len(results) > 1:
      stats = aggregate.aggregate(results, SPREAD)
      first = next(r for r in plan if r["point"] == name)
      rows.append({**_row({**first, "seed": f"mean of {len(results)}", "fold": "pooled" if first["fold"] else ""},
                          {k: stats[k]["mean"] for k in SPREAD}),
                   **{f"{k}_std": stats[k]["std"] for k in SPREAD}})
  if jax.process_index() == 0:
    write_table(rows, workdir)
  return rows


def _train_unfinished(cfg, overrides: dict, path: str, label: str) -> None:
  if os.path.exists(os.path.join(path, "results.json")):
    _say(f"{label} finished, skipped")
    return
  _say(label)
  trainer.train(configure(cfg, overrides), path)


def pool(cfg, run_dirs: list[str], out_dir: str) -> dict:
  """Scores of every fold's predictions.csv on one pooled confusion matrix; written to out_dir."""
  logs = [log_lib.read(os.path.join(d, "predictions.csv"), cfg.data.scheme) for d in run_dirs]
  cat = lambda field: [x for log in logs for x in getattr(log, field)]
  truth, pred = np.concatenate([l.truth for l in logs]), np.concatenate([l.prediction for l in logs])
  scored = metrics.pooled(truth, pred, len(logs[0].classes), cat("dataset"))
  full = {k: v for k, v in scored["full"].items() if k != "num_clips"}
  results = {**full, "per_dataset": scored["per_dataset"], "classes": list(logs[0].classes),
             "num_test_clips": int(len(truth)), "num_test_subjects": len(set(cat("subject"))),
             "train_seconds": round(sum(_results(d).get("train_seconds", 0.0) for d in run_dirs), 1),
             "folds": [os.path.basename(d) for d in run_dirs]}
  if jax.process_index() == 0:
    os.makedirs(out_dir, exist_ok=True)
    log_lib.write(os.path.join(out_dir, "predictions.csv"), logs[0].classes, cat("dataset"), cat("subject"),
                  cat("clip"), truth, pred)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
      json.dump(results, f, indent=2)
  return results


def _results(path: str) -> dict:
  file = os.path.join(path, "results.json")
  if not os.path.exists(file):
    raise SweepError(f"{path}: no results.json after training")
  with open(file) as f:
    return json.load(f)


def _row(r: dict, results: dict) -> dict:
  return {"point": r["point"], "overrides": r["overrides"], "seed": "" if r["seed"] is None else r["seed"],
          "fold": r["fold"] or "", **{k: results.get(k) for k in SCORES}}


def write_table(rows: list[dict], workdir: str) -> None:
  """results.csv (one column per overridden field) and results.md."""
  fields = list(dict.fromkeys(f for r in rows for f in r["overrides"]))
  spread = [f"{k}_std" for k in SPREAD] if any(f"{SPREAD[0]}_std" in r for r in rows) else []
  header = ["point", *fields, "seed", "fold", *SCORES, *spread]
  cell = lambda x: "" if x is None else round(x, 4) if isinstance(x, float) else x
  table = [[r["point"], *(r["overrides"].get(f, "") for f in fields), r["seed"], r["fold"],
            *(cell(r.get(k)) for k in SCORES), *(cell(r.get(k)) for k in spread)] for r in rows]
  with open(os.path.join(workdir, "results.csv"), "w", newline="") as f:
    csv.writer(f).writerows([header, *table])
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in table]
  with open(os.path.join(workdir, "results.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  plots.sweep_points(seed_scores(rows), os.path.join(workdir, "results.png"))


def seed_scores(rows: list[dict], metric: str = "uf1") -> dict[str, dict]:
  """{point: {seed: score}}: each seed's run, or its LOSO folds' pooled score (not fold rows, not means)."""
  out = {}
  for r in rows:
    per_seed = not str(r["seed"]).startswith("mean") and (not r["fold"] or str(r["fold"]).startswith("pooled"))
    if per_seed and r.get(metric) is not None:
      out.setdefault(r["point"], {})[r["seed"]] = r[metric]
  return out


def _say(text: str) -> None:
  if jax.process_index() == 0:
    print(text, flush=True)
