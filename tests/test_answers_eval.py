"""Scoring generated (C, E, R) answers: parse failures, emotion vs label and vs the classifier
head, and AU cue precision / recall against scikit-learn on random answers."""

import numpy as np
import pytest
from sklearn import metrics as skm

from deft_jax.data import answers
from deft_jax.eval import answer_scores
from deft_jax.facs import catalogue, emotions

CLASSES = emotions.SCHEMES["composite"]


def _answer(aus, emotion):
  cues = tuple(answers.Cue(catalogue.au(a).region, catalogue.au(a).motion, a) for a in aus)
  return answers.format_answer(answers.Answer(cues, emotion, f"The cues point to {emotion}."))


def test_parse_keeps_cues_aus_and_emotion_and_names_failures():
  parsed = answer_scores.parse(_answer([12, 6], "positive"))
  assert parsed["emotion"] == "positive" and parsed["aus"] == [6, 12] and len(parsed["cues"]) == 2
  assert answer_scores.parse(answers.format_answer(answers.Answer((), "surprise", "none")))["aus"] == []
  assert "error" in answer_scores.parse("Emotion: positive")
  assert "AU" in answer_scores.parse("Cues: mouth smiles (AU99 grin)\nEmotion: positive\nReasoning: x")["error"]


def test_emotion_agreement_and_parse_failures_by_hand():
  texts = [_answer([12], "positive"),  # right, agrees with the head
           _answer([4], "negative"),  # wrong (truth surprise), agrees with the head
           _answer([], "happiness"),  # parses but names no composite class: a miss
           "garbage"]  # does not parse: a miss
  parsed = [answer_scores.parse(t) for t in texts]
  s = answer_scores.score(parsed, truth=[1, 2, 1, 0], head=[1, 0, 1, 0], labelled_aus=[{12}, {1, 2}, {12}, {4}],
                          classes=CLASSES)
  assert s["count"] == 4 and s["parse_failures"] == 1
  assert s["emotion"]["accuracy"] == 0.25 and s["emotion"]["no_class"] == 2
  assert s["agreement_with_head"] == 0.5
  # Class F1 over (truth, said) with misses kept: positive 2TP/(2TP+FP+FN) = 2/(2+0+1).
  assert s["emotion"]["uf1"] == pytest.approx((0 + 2 / 3 + 0) / 3)
  assert s["emotion"]["uar"] == pytest.approx((0 + 0.5 + 0) / 3)
  cues = s["au_cues"]
  assert cues["per_au"]["AU12"] == {"precision": 1.0, "recall": 0.5, "cited": 1, "labelled": 2}
  assert cues["per_au"]["AU4"]["precision"] == 0.0 and cues["per_au"]["AU4"]["recall"] == 0.0
  assert cues["per_au"]["AU1"]["precision"] is None  # never cited: undefined, not 0
  assert cues["precision"] == pytest.approx(1 / 2) and cues["recall"] == pytest.approx(1 / 5)


def test_au_cues_match_sklearn_on_random_answers():
  rng = np.random.default_rng(1)
  n, numbers = int(rng.integers(30, 120)), catalogue.AU_NUMBERS
  labelled = rng.random((n, len(numbers))) < 0.2
  cited = np.where(rng.random(labelled.shape) < 0.7, labelled, rng.random(labelled.shape) < 0.1)
  failed = rng.random(n) < 0.1
  texts = ["not an answer" if f else _answer([numbers[j] for j in np.flatnonzero(c)], "negative")
           for f, c in zip(failed, cited)]
  cited[failed] = False  # an answer that does not parse cites nothing
  s = answer_scores.score([answer_scores.parse(t) for t in texts], np.zeros(n, int), np.zeros(n, int),
                          [{numbers[j] for j in np.flatnonzero(l)} for l in labelled], CLASSES)
  assert s["parse_failures"] == failed.sum()
  precision = skm.precision_score(labelled, cited, average=None, zero_division=np.nan)
  recall = skm.recall_score(labelled, cited, average=None, zero_division=np.nan)
  for j, a in enumerate(numbers):
    got = s["au_cues"]["per_au"].get(f"AU{a}")
    if got is None:
      assert not labelled[:, j].any() and not cited[:, j].any()
      continue
    for key, expected in (("precision", precision[j]), ("recall", recall[j])):
      assert (got[key] is None) if np.isnan(expected) else got[key] == pytest.approx(expected), (a, key)
  assert s["au_cues"]["precision"] == pytest.approx(skm.precision_score(labelled, cited, average="micro"))
  assert s["au_cues"]["recall"] == pytest.approx(skm.recall_score(labelled, cited, average="micro"))
  assert s["emotion"]["accuracy"] == pytest.approx(1 - failed.mean())
