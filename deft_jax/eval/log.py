"""The per-clip prediction log (MEGC per-fold log): one CSV row per test clip.

    dataset,subject,clip,truth,prediction[,p_<class>...]

deft-jax writes it as WORKDIR/predictions.csv; `read` takes the same file, or a peer's with
only the five named columns, so every set of predictions is scored by the same function.
"""

import csv
import dataclasses
import os

import numpy as np

from deft_jax.facs import emotion_names, emotions

FIELDS = ("dataset", "subject", "clip", "truth", "prediction")


class LogError(ValueError):
  """A log that cannot be scored; the message names the file, and the row and field if any."""


@dataclasses.dataclass(frozen=True)
class Log:
  classes: tuple[str, ...]
  dataset: tuple[str, ...]
  subject: tuple[str, ...]
  clip: tuple[str, ...]
  truth: np.ndarray  # (N,) class indices
  prediction: np.ndarray  # (N,) class indices

  def __len__(self):
    return len(self.truth)


def write(path, classes, dataset, subject, clip, truth, prediction, probs=None) -> None:
  """Writes the log; truth and prediction are class indices, probs an optional (N, C) array."""
  classes = tuple(classes)
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(FIELDS + (tuple(f"p_{c}" for c in classes) if probs is not None else ()))
    for i, row in enumerate(zip(dataset, subject, clip, truth, prediction)):
      d, s, c, t, p = row
      extra = [f"{x:.4f}" for x in probs[i]] if probs is not None else []
      w.writerow([d, s, c, classes[t], classes[p]] + extra)


def read(path, scheme: str = "composite") -> Log:
  """Reads and checks a log against the classes of `scheme`.

  Names match case-insensitively; in the 3-class schemes a fine emotion counts as its class
  ("happiness" as positive), as emotions.label maps it, and the spellings the builders accept
  ("happy", "Surprised") are read as they are (facs/emotion_names.py).
  """
  if scheme not in emotions.SCHEMES:
    raise LogError(f"unknown scheme {scheme!r}; known: {', '.join(emotions.SCHEMES)}")
  classes = emotions.SCHEMES[scheme]
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise LogError(f"{path}: no such file")
  with open(path, newline="", encoding="utf-8-sig") as f:
    rows = list(csv.reader(f))
  if not rows or not any(cell.strip() for cell in rows[0]):
    raise LogError(f"{path}: empty file; expected a header with {', '.join(FIELDS)}")
  header = [h.strip().lower() for h in rows[0]]
  missing = [f for f in FIELDS if f not in header]
  if missing:
    raise LogError(f"{path}: no column {', '.join(repr(m) for m in missing)} in the header "
                   f"({', '.join(rows[0])}); required: {', '.join(FIELDS)}")
  col = {f: header.index(f) for f in FIELDS}
  values = {f: [] for f in FIELDS}
  for number, row in enumerate(rows[1:], start=2):
    if not any(cell.strip() for cell in row):
      continue
    for field in FIELDS:
      cell = row[col[field]].strip() if col[field] < len(row) else ""
      if not cell and field in ("dataset", "truth", "prediction"):
        raise LogError(f"{path}: row {number}: field {field!r} is empty")
      if field in ("truth", "prediction"):
        index = emotions.label(emotion_names.emotion_name(cell) or cell, scheme)  # "happy" as the builders read it
        if index < 0:
          raise LogError(f"{path}: row {number}: field {field!r}: unknown class {cell!r}; "
                         f"the {scheme} scheme has {', '.join(classes)}")
        cell = index
      values[field].append(cell)
  if not values["truth"]:
    raise LogError(f"{path}: no rows after the header")
  return Log(classes, tuple(values["dataset"]), tuple(values["subject"]), tuple(values["clip"]),
             np.array(values["truth"], np.int64), np.array(values["prediction"], np.int64))
