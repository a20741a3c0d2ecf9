"""Scoring generated (C, E, R) answers: parse rate, consistency, emotion, agreement, AU cues.

The emotion in E is scored against the label (an answer that does not parse, or names no
class, is a miss) and against the classifier head's prediction for the same clip. The AUs
cited in C are scored against the labelled AUs, per AU; an answer that does not parse cites
none, so its labelled AUs count as missed. An answer whose reasoning contradicts its own cues
or emotion (answers.disagreements) is counted as inconsistent; it is still scored as written.
"""

import numpy as np

from deft_jax.data import answers
from deft_jax.eval import metrics


def parse(text: str) -> dict:
  """{"cues", "aus", "emotion", "reasoning", "disagreements"} of an answer, or {"error"} when it
  does not parse."""
  try:
    a = answers.parse_answer(text)
  except answers.ParseError as e:
    return {"error": str(e)}
  return {"cues": [c.text() for c in a.cues], "aus": sorted({c.au for c in a.cues if c.au is not None}),
          "emotion": a.emotion, "reasoning": a.reasoning, "disagreements": answers.disagreements(a)}


def _ratio(num, den):
  return float(num / den) if den else None


def au_scores(cited: list[set[int]], labelled: list[set[int]]) -> dict:
  """Micro precision / recall of cited AUs, and per AU (None where undefined)."""
  per_au = {}
  for au in sorted(set().union(*cited, *labelled)):
    tp = sum(au in c and au in l for c, l in zip(cited, labelled))
    n_cited, n_labelled = sum(au in c for c in cited), sum(au in l for l in labelled)
    per_au[f"AU{au}"] = {"precision": _ratio(tp, n_cited), "recall": _ratio(tp, n_labelled),
                         "cited": n_cited, "labelled": n_labelled}
  tp = sum(len(c & l) for c, l in zip(cited, labelled))
  return {"precision": _ratio(tp, sum(map(len, cited))), "recall": _ratio(tp, sum(map(len, labelled))),
          "per_au": per_au}


def score(parsed: list[dict], truth, head, labelled_aus: list[set[int]], classes) -> dict:
  """Scores of answers `parsed` (from parse()) for clips with class indices truth and head."""
  classes = tuple(classes)
  no_class = len(classes)
  said = np.array([classes.index(p["emotion"].strip().lower())
                   if "error" not in p and p["emotion"].strip().lower() in classes else no_class
                   for p in parsed], np.int64)
  truth, head = np.asarray(truth, np.int64), np.asarray(head, np.int64)
  cm = metrics.confusion(truth, said, len(classes), len(classes) + 1)
  emotion = metrics.scores(cm)
  return {
      "count": len(parsed),
      "parse_failures": sum("error" in p for p in parsed),
      # parsed answers whose reasoning contradicts their cues or emotion
      "inconsistent": sum(bool(p.get("disagreements")) for p in parsed),
      "emotion": {"uf1": emotion["uf1"], "uar": emotion["uar"], "accuracy": emotion["accuracy"],
                  "no_class": int((said == no_class).sum()), "confusion": cm.tolist()},
      "agreement_with_head": _ratio(int((said == head).sum()), len(parsed)),
      "au_cues": au_scores([set(p.get("aus", ())) for p in parsed], [set(a) for a in labelled_aus]),
  }
