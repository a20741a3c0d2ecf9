"""The structured answer (C, E, R) and the instructions that ask for it.

    Cues: <region> <motion> (AU<n> <name>); ...
    Emotion: <label>
    Reasoning: <how the cues support the label>

`format_answer` and `parse_answer` are exact inverses, so generated text can be scored
against labels field by field.
"""

import dataclasses
import re

import numpy as np

from deft_jax.data import features
from deft_jax.facs import catalogue, emotions

INSTRUCTIONS = (
    "Describe the facial motion and recognise the micro-expression.",
    "Which micro-expression does this face show, and which action units support it?",
    "Look at the motion between onset and apex. What emotion is shown? Explain with action units.",
)
NO_CUES = "no clear local motion"
_SIDES = {features.SIDE_LEFT: "left ", features.SIDE_RIGHT: "right "}


@dataclasses.dataclass(frozen=True)
class Cue:
  region: str
  motion: str
  au: int | None = None  # None: a motion seen without an AU label

  def text(self) -> str:
    tag = f" (AU{self.au} {catalogue.au(self.au).name})" if self.au is not None else ""
    return f"{self.region} {self.motion}{tag}"


@dataclasses.dataclass(frozen=True)
class Answer:
  cues: tuple[Cue, ...]
  emotion: str
  reasoning: str


def format_answer(answer: Answer) -> str:
  cues = "; ".join(c.text() for c in answer.cues) or NO_CUES
  return f"Cues: {cues}\nEmotion: {answer.emotion}\nReasoning: {answer.reasoning}"


_CUE = re.compile(r"^(?P<region>\w+) (?P<motion>.+?)(?: \(AU(?P<au>\d+) (?P<name>[a-z ]+)\))?$")
_ANSWER = re.compile(r"^Cues: (?P<cues>.*)\nEmotion: (?P<emotion>.*)\nReasoning: (?P<reasoning>.*)$", re.S)


class ParseError(ValueError):
  pass


def parse_answer(text: str) -> Answer:
  """Inverse of format_answer; raises ParseError naming the part that does not fit."""
  m = _ANSWER.match(text.strip())
  if not m:
    raise ParseError(f"not a (Cues, Emotion, Reasoning) answer: {text[:80]!r}")
  cues = []
  if m["cues"] != NO_CUES:
    for part in m["cues"].split("; "):
      c = _CUE.match(part)
      if not c or c["region"] not in catalogue.REGIONS:
        raise ParseError(f"cue {part!r} is not '<region> <motion> (AU<n> <name>)'")
      au = int(c["au"]) if c["au"] else None
      if au is not None and (au not in catalogue.AU_NUMBERS or catalogue.au(au).name != c["name"]):
        raise ParseError(f"cue {part!r} names an AU that is not AU{au} of the catalogue")
      cues.append(Cue(c["region"], c["motion"], au))
  return Answer(tuple(cues), m["emotion"].strip(), m["reasoning"].strip())


def answer_from_labels(aus: np.ndarray, au_side: np.ndarray, emotion: str, scheme: str) -> Answer:
  """An answer whose cues are the labelled AUs (the Uni-MER builder replaces these with
  flow-confirmed cues)."""
  cues = []
  for i in np.flatnonzero(aus):
    unit = catalogue.AUS[i]
    cues.append(Cue(unit.region, _SIDES.get(int(au_side[i]), "") + unit.motion, unit.number))
  label = emotion if scheme not in ("composite", "casme3-3", "casme3-4") else (emotions.coarse(emotion) or emotion)
  return Answer(tuple(cues), label, reasoning(cues, emotion, label))


def reasoning(cues, fine: str, label: str) -> str:
  tags = [f"AU{c.au}" for c in cues if c.au is not None]
  if not tags:
    return f"No action unit moves clearly, so the weak motion is read as {label}."
  what = " and ".join([", ".join(tags[:-1]), tags[-1]] if len(tags) > 1 else tags)
  verb = "points" if len(tags) == 1 else "point"
  read_as = f", read as {label}" if fine != label else ""
  return f"{what} {verb} to {fine}{read_as}."


def corpus() -> list[str]:
  """Every kind of sentence the model reads or writes, to train its tokenizer on."""
  texts = list(INSTRUCTIONS)
  for unit in catalogue.AUS:
    for side in ("", "left ", "right "):
      texts.append(Cue(unit.region, side + unit.motion, unit.number).text())
  for scheme, classes in emotions.SCHEMES.items():
    for label in classes:
      texts.append(format_answer(Answer((), label, reasoning((), label, label))))
  rng = np.random.default_rng(0)
  for fine, protos in emotions.PROTOTYPES.items():
    for proto in protos:
      aus = np.zeros(catalogue.NUM_AUS, np.uint8)
      for a in proto:
        aus[catalogue.au_index(int(a.rstrip("L")))] = 1
      side = np.where(aus, features.SIDE_BOTH, 0).astype(np.uint8)
      for scheme in rng.permutation(list(emotions.SCHEMES))[:3]:
        texts.append(format_answer(answer_from_labels(aus, side, fine, scheme)))
  return texts
