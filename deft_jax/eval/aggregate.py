"""Mean and spread over runs (seeds) of the same protocol.

Every run given is used: nothing is picked by its test score (choosing the best seed, epoch
or checkpoint on the test fold inflates results, as HTNet and MMNet do). Runs must share the
protocol (classes and test clips), so one table never mixes protocols.
"""

import json
import os

import numpy as np

KEYS = ("uf1", "uar", "accuracy")


class AggregateError(ValueError):
  pass


def load(paths) -> list[dict]:
  """results.json of each path: a workdir or the file itself."""
  out = []
  for path in paths:
    path = os.fspath(path)
    file = os.path.join(path, "results.json") if os.path.isdir(path) else path
    if not os.path.isfile(file):
      raise AggregateError(f"{file}: no such results file")
    with open(file) as f:
      try:
        out.append({**json.load(f), "path": file})
      except json.JSONDecodeError as e:
        raise AggregateError(f"{file}: not JSON ({e})") from None
  return out


def _stats(values) -> dict:
  v = np.asarray(values, np.float64)
  std = float(v.std(ddof=1)) if len(v) > 1 else 0.0
  return {"mean": float(v.mean()), "std": std, "values": v.tolist()}


def aggregate(runs: list[dict], keys=KEYS) -> dict:
  """Mean, sample std (ddof=1; 0 for a single run) and values of each key over runs.

  Per-dataset slices ("per_dataset" in a run's results) are aggregated the same way when
  every run has them.
  """
  if not runs:
    raise AggregateError("no runs to aggregate")
  names = lambda r: r.get("path", "a run")
  for field in ("classes", "num_test_clips"):
    seen = {json.dumps(r.get(field)) for r in runs}
    if len(seen) > 1:
      raise AggregateError(f"runs differ in {field!r} ({', '.join(sorted(seen))}), so they do not "
                           f"follow one protocol: {', '.join(names(r) for r in runs)}")
  for r in runs:
    absent = [k for k in keys if k not in r]
    if absent:
      raise AggregateError(f"{names(r)}: no {', '.join(absent)}")
  out = {"runs": len(runs), **{k: _stats([r[k] for r in runs]) for k in keys}}
  datasets = [set(r.get("per_dataset", {})) for r in runs]
  common = set.intersection(*datasets) if all(datasets) else set()
  if common:
    out["per_dataset"] = {d: {k: _stats([r["per_dataset"][d][k] for r in runs]) for k in keys}
                          for d in sorted(common)}
  return out
