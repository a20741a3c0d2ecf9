"""How labels and flow agreed in one Uni-MER build: per AU, per source dataset, and, where
the source keeps the uncorrupted truth (synthetic_me's aus_true), against the truth."""

import collections

import numpy as np

from deft_jax.facs import catalogue

KINDS = ("labelled", "confirmed", "flagged", "added")


class Report:
  """Counts of labelled / confirmed / flagged / added AUs; kept in metadata.json."""

  def __init__(self, name: str):
    self.name = name
    self.clips = collections.Counter()  # source dataset -> clips
    self.per_au = {n: collections.Counter() for n in catalogue.AU_NUMBERS}
    self.per_source: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    self.truth = collections.Counter()  # tp/fp/fn of confirmed and of written labels

  def add(self, source: str, labels, verdict, truth=None) -> None:
    labels = np.asarray(labels).astype(bool)
    self.clips[source] += 1
    kinds = {"labelled": labels, "confirmed": verdict.confirmed, "flagged": verdict.flagged, "added": verdict.added}
    for kind, vector in kinds.items():
      self.per_source[source][kind] += int(vector.sum())
      for i in np.flatnonzero(vector):
        self.per_au[catalogue.AU_NUMBERS[i]][kind] += 1
    if truth is not None:
      truth = np.asarray(truth).astype(bool)
      for name, vector in (("confirmed", verdict.confirmed), ("labels", labels), ("added", verdict.added)):
        self.truth[f"{name}_tp"] += int((vector & truth).sum())
        self.truth[f"{name}_fp"] += int((vector & ~truth).sum())
        self.truth[f"{name}_fn"] += int((~vector & truth).sum())

  def against_truth(self) -> dict[str, float]:
    """Precision and recall of confirmed AUs (and of the written labels) against aus_true."""
    out = {}
    for name in ("confirmed", "labels", "added"):
      tp, fp, fn = (self.truth[f"{name}_{k}"] for k in ("tp", "fp", "fn"))
      if tp + fp + fn:
        out[f"{name}_precision"] = tp / max(tp + fp, 1)
        out[f"{name}_recall"] = tp / max(tp + fn, 1)
    return out

  def as_dict(self) -> dict:
    agreement = lambda c: c["confirmed"] / c["labelled"] if c["labelled"] else None
    return {
        "dataset": self.name,
        "clips": dict(self.clips),
        "per_au": {f"AU{n}": {**{k: c[k] for k in KINDS}, "agreement": agreement(c)} for n, c in self.per_au.items()},
        "per_source": {s: {**{k: c[k] for k in KINDS}, "agreement": agreement(c)} for s, c in self.per_source.items()},
        "truth": self.against_truth(),
    }

  def summary(self) -> str:
    d = self.as_dict()
    lines = [f"{self.name}: {sum(self.clips.values())} clips; AUs labelled / confirmed / flagged / added "
             "(agreement = confirmed / labelled)"]
    for key in ("per_source", "per_au"):
      for name, c in d[key].items():
        if c["labelled"] or c["added"]:
          share = "-" if c["agreement"] is None else f"{c['agreement']:.2f}"
          lines.append(f"  {name:>8}: {c['labelled']:4d} {c['confirmed']:4d} {c['flagged']:4d} {c['added']:4d}  {share}")
    if d["truth"]:
      lines.append("  against the uncorrupted AUs: " + ", ".join(f"{k} {v:.3f}" for k, v in d["truth"].items()))
    return "\n".join(lines)
