"""An answer's reasoning is built from, and checked against, its cues (issue 15, item 4)."""

import numpy as np
import pytest

from deft_jax.data import answers
from deft_jax.eval import answer_scores
from deft_jax.facs import catalogue, emotions, words

ISSUE_TEXT = ("Cues: brows raise at the inner ends (AU1 inner brow raiser); brows lower and draw together "
              "(AU4 brow lowerer); mouth upper lip rises (AU10 upper lip raiser)\nEmotion: sadness\n"
              "Reasoning: AU1, AU4 and AU5 point to sadness.")


def test_the_issue_answer_is_flagged_on_both_counts():
  problems = answers.disagreements(answers.parse_answer(ISSUE_TEXT))
  assert problems == ["reasoning names AU5, which no cue states", "cue AU10 missing from the reasoning"]


def test_reasoning_for_another_emotion_or_wrong_regions_is_flagged():
  cue = answers.Cue("mouth", "corners rise", 12)
  seen = answers.Cue("nose", "moves up slightly", None)
  assert answers.disagreements(answers.Answer((cue,), "positive", "AU12 points to happiness.")) == [
      "reasoning does not end with the emotion 'positive'"]
  bad = answers.Answer((cue, seen), "happiness",
                       "The brows also move without a named action unit. AU12 points to happiness.")
  (problem,) = answers.disagreements(bad)
  assert "brows move without a named action unit; the cues say nose" in problem
  with pytest.raises(ValueError, match="inconsistent answer"):
    answers.checked(bad)


def _random_cues(rng):
  cues = []
  for i in rng.choice(catalogue.NUM_AUS, size=int(rng.integers(0, 4)), replace=False):
    unit = catalogue.AUS[i]
    cues.append(answers.Cue(unit.region, words.au_motion(unit, "both"), unit.number))
  for region in rng.choice(catalogue.REGIONS, size=int(rng.integers(0, 3)), replace=False):
    cues.append(answers.Cue(str(region), words.observed_motion(str(region), "up", words.STRENGTHS[0]), None))
  return tuple(cues)


def test_every_written_answer_agrees_with_itself():
  rng = np.random.default_rng(0)
  fines = sorted(emotions.PROTOTYPES)
  for _ in range(200):
    cues, fine = _random_cues(rng), fines[int(rng.integers(len(fines)))]
    absent = (catalogue.AU_NUMBERS[int(rng.integers(catalogue.NUM_AUS))],)
    for _, _, answer in answers.task_pairs(cues, fine, rng, absent_aus=absent):
      relabelled = answers.relabel(answer, fine, answers.scheme_label(fine, "composite"))
      assert answers.disagreements(answers.parse_answer(answers.format_answer(relabelled))) == []
  for text in answers.corpus():
    if text.startswith("Cues: "):
      assert answer_scores.parse(text)["disagreements"] == [], text


def test_evaluator_counts_inconsistent_answers():
  good = answers.format_answer(answers.Answer((answers.Cue("mouth", "corners rise", 12),), "positive",
                                              "AU12 points to happiness, read as positive."))
  parsed = [answer_scores.parse(t) for t in (ISSUE_TEXT, good, "not an answer")]
  s = answer_scores.score(parsed, truth=[0, 1, 0], head=[0, 1, 0], labelled_aus=[{1, 4}, {12}, set()],
                          classes=emotions.SCHEMES["composite"])
  assert s["inconsistent"] == 1 and s["parse_failures"] == 1
