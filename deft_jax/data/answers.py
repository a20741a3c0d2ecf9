"""The structured answer (C, E, R) and the instructions that ask for it.

    Cues: <region> <motion> (AU<n> <name>); ...
    Emotion: <label>
    Reasoning: <how the cues support the label>

`format_answer` and `parse_answer` are exact inverses, so generated text can be scored
against labels field by field. Answers are written for the fine emotion (label == fine) and
`relabel` restates them in a class scheme ("disgust" -> "negative"), so one record serves
every scheme. Uni-MER asks for the same answer in several ways (`TASKS`); every task's
answer is a (C, E, R) answer.
"""

import dataclasses
import re

import numpy as np

from deft_jax.data import features
from deft_jax.facs import catalogue, emotions, regions, words

# The "recognise" task; INSTRUCTIONS[0] is the prompt of every evaluation.
INSTRUCTIONS = (
    "Describe the facial motion and recognise the micro-expression.",
    "Which micro-expression does this face show, and which action units support it?",
    "Look at the motion between onset and apex. What emotion is shown? Explain with action units.",
)
# Uni-MER's other tasks; "{region}", "{au}" and "{name}" are filled per clip.
TASKS = {
    "recognise": INSTRUCTIONS,
    "describe": ("List the local facial motions between onset and apex, then name the micro-expression.",
                 "Which parts of the face move, which way and how strongly? What emotion do they show?"),
    "region": ("What happens in the {region} region in this clip, and which emotion does the face show?",
               "Look at the {region} region. How does it move, and what is the micro-expression?"),
    "au": ("Is AU{au} ({name}) active in this clip? Answer with the cues, the emotion and why.",
           "Does the face show AU{au} ({name})? Then name the micro-expression."),
    "explain": ("Explain action unit by action unit which micro-expression this is.",
                "Why does this face show its micro-expression? Go through the action units."),
}
NO_CUES = "no clear local motion"
_SIDES = {features.SIDE_LEFT: "left", features.SIDE_RIGHT: "right"}


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


_NAMED_AU = re.compile(r"\bAU(\d+)\b")
_NOT_SEEN = re.compile(r"\bAU(\d+) \([a-z ]+\) is not seen\b")
_OBSERVED = re.compile(r"\bThe (?P<regions>[a-z ,]+?) also moves? without a named action unit\.")


def disagreements(answer: Answer) -> list[str]:
  """Where an answer's reasoning contradicts its own cues or emotion ([] when the parts agree).

  The reasoning may name an AU only if a cue states it (or to say that it "is not seen"),
  names every AU the cues state, names as moving without an AU (when it says so) exactly the
  regions of the cues without one, and ends with the answer's emotion (see `reasoning`).
  """
  out = []
  stated = [c.au for c in answer.cues if c.au is not None]
  absent = {int(n) for n in _NOT_SEEN.findall(answer.reasoning)}
  named = [int(n) for n in _NAMED_AU.findall(answer.reasoning)]
  extra = sorted(set(named) - set(stated) - absent)
  if extra:
    out.append(f"reasoning names {', '.join(f'AU{n}' for n in extra)}, which no cue states")
  unnamed = [n for n in dict.fromkeys(stated) if n not in named]
  if unnamed:
    out.append(f"cue {', '.join(f'AU{n}' for n in unnamed)} missing from the reasoning")
  m = _OBSERVED.search(answer.reasoning)
  observed = {c.region for c in answer.cues if c.au is None}
  if m and set(re.split(r", | and ", m["regions"])) != observed:
    out.append(f"reasoning says the {m['regions']} move without a named action unit; the cues say "
               f"{', '.join(sorted(observed)) or 'no region'}")
  if not answer.reasoning.rstrip().endswith(f"{answer.emotion}."):
    out.append(f"reasoning does not end with the emotion {answer.emotion!r}")
  return out


def checked(answer: Answer) -> Answer:
  """The answer, after making sure its parts agree (answers written for training are)."""
  problems = disagreements(answer)
  if problems:
    raise ValueError(f"inconsistent answer ({'; '.join(problems)}): {format_answer(answer)[:160]!r}")
  return answer


def scheme_label(emotion: str, scheme: str) -> str:
  """The name `scheme` gives a fine emotion (emotions.class_name), or the emotion itself."""
  return emotions.class_name(emotion, scheme) or emotion


def relabel(answer: Answer, fine: str, label: str) -> Answer:
  """An answer written for `fine` restated for a scheme's `label` (the last sentence of the
  reasoning, which ends with the fine emotion, gains ", read as <label>")."""
  if answer.emotion != fine or not answer.reasoning.endswith(f"{fine}."):
    raise ValueError(f"answer is not written for {fine!r}: {format_answer(answer)[:120]!r}")
  if label == fine:
    return answer
  return Answer(answer.cues, label, f"{answer.reasoning[:-1]}, read as {label}.")


def answer_from_labels(aus: np.ndarray, au_side: np.ndarray, emotion: str, scheme: str) -> Answer:
  """An answer whose cues are the labelled AUs, as written (no measured strength)."""
  cues = []
  for i in np.flatnonzero(aus):
    unit = catalogue.AUS[i]
    cues.append(Cue(unit.region, words.au_motion(unit, _SIDES.get(int(au_side[i]), "both")), unit.number))
  return checked(relabel(Answer(tuple(cues), emotion, reasoning(cues, emotion)), emotion, scheme_label(emotion, scheme)))


def measured_cues(verdict, m) -> tuple[Cue, ...]:
  """Cues of a dual-constraint verdict (facs.dual_constraint) in region order: confirmed AUs
  by name, added ones as observed motion; strength and side come from the measurement."""
  out = []
  for region in catalogue.REGIONS:
    for i, au in enumerate(catalogue.AUS):
      if au.region != region or not (verdict.confirmed[i] or verdict.added[i]):
        continue
      side = m.side(i)
      adverb = words.strength(float(m.amplitude[i].max()), m.noise)
      if verdict.confirmed[i]:
        out.append(Cue(region, words.au_motion(au, side, adverb), au.number))
      else:
        half = "centre" if not au.bilateral else ("right" if regions.image_half(side) == "right" else "left")
        way = words.direction(*au.unit_direction(half), half=half)
        out.append(Cue(region, words.observed_motion(region, way, adverb, side), None))
  return tuple(out)


def _tags(cues) -> list[str]:
  return [f"AU{c.au}" for c in cues if c.au is not None]


def _join(items: list[str], conjunction: str = "and") -> str:
  return f" {conjunction} ".join([", ".join(items[:-1]), items[-1]] if len(items) > 1 else items)


def reasoning(cues, fine: str) -> str:
  """Why the cues support the fine emotion; always ends with the emotion (see relabel)."""
  tags = _tags(cues)
  observed = sorted({c.region for c in cues if c.au is None}, key=catalogue.REGIONS.index)
  lead = ""
  if observed:
    verb = "move" if len(observed) > 1 or observed[0] in words.PLURAL_REGIONS else "moves"
    lead = f"The {_join(observed)} also {verb} without a named action unit. "
  if not tags:
    return f"{lead}No action unit moves clearly, so the weak motion is read as {fine}."
  plural = len(tags) > 1
  supports = fine in emotions.tendency(c.au for c in cues if c.au is not None)
  verb = ("point" if plural else "points") + " to" if supports else ("are" if plural else "is") + " read as"
  return f"{lead}{_join(tags)} {verb} {fine}."


def explanation(cues, fine: str) -> str:
  """Reasoning AU by AU: each AU's emotion tendencies (emotions.TENDENCIES), then the verdict."""
  parts = []
  for c in cues:
    if c.au is None:
      continue
    leaning = list(emotions.TENDENCIES.get(c.au, {}))[:3]
    unit = catalogue.au(c.au)
    parts.append(f"AU{c.au} ({unit.name}) leans to {_join(leaning, 'or')}." if leaning
                 else f"AU{c.au} ({unit.name}) leans to no one emotion.")
  return " ".join(parts + [reasoning(cues, fine)])


def _with_rest(sentence: str, fine: str) -> str:
  return f"{sentence} With the rest of the face, the emotion is {fine}."


def task_pairs(cues: tuple[Cue, ...], fine: str, rng: np.random.Generator,
               absent_aus: tuple[int, ...] = ()) -> list[tuple[str, str, Answer]]:
  """(task, instruction, answer) for each Uni-MER task, written for the fine emotion.

  The first pair is always INSTRUCTIONS[0] with the full answer (the evaluation prompt).
  The region task asks about a region with a cue (or, one time in four, any region); the AU
  task about a stated AU or, half the time, one of `absent_aus` (e.g. flagged labels: the
  answer then says that no matching motion is seen).
  """
  pick = lambda seq: seq[int(rng.integers(len(seq)))]
  full = Answer(cues, fine, reasoning(cues, fine))
  pairs = [("recognise", INSTRUCTIONS[0], full),
           ("recognise", pick(INSTRUCTIONS[1:]), full),
           ("describe", pick(TASKS["describe"]), full),
           ("explain", pick(TASKS["explain"]), Answer(cues, fine, explanation(cues, fine)))]
  moving = [c.region for c in cues]
  region = pick(moving) if moving and rng.random() < 0.75 else pick(catalogue.REGIONS)
  pairs.append(("region", pick(TASKS["region"]).format(region=region), _region_answer(cues, region, fine)))
  stated = [c.au for c in cues if c.au is not None]
  if stated and (not absent_aus or rng.random() < 0.5):
    asked = pick(stated)
  else:
    asked = pick(absent_aus) if absent_aus else pick(catalogue.AU_NUMBERS)
  name = catalogue.au(asked).name
  pairs.append(("au", pick(TASKS["au"]).format(au=asked, name=name), _au_answer(cues, asked, fine)))
  return [(task, instruction, checked(answer)) for task, instruction, answer in pairs]


def _region_answer(cues, region: str, fine: str) -> Answer:
  local = tuple(c for c in cues if c.region == region)
  if _tags(local):
    what = _join(_tags(local))
  else:
    what = "motion without a named action unit" if local else "no clear motion"
  verb = "show" if region in words.PLURAL_REGIONS else "shows"
  return Answer(local, fine, _with_rest(f"The {region} {verb} {what}.", fine))


def _au_answer(cues, number: int, fine: str) -> Answer:
  unit = catalogue.au(number)
  cue = next((c for c in cues if c.au == number), None)
  if cue is None:
    return Answer((), fine, _with_rest(f"AU{number} ({unit.name}) is not seen: no motion of the {unit.region} "
                                       "matches it.", fine))
  return Answer((cue,), fine, _with_rest(f"AU{number} ({unit.name}) is active: the {cue.region} {cue.motion}.", fine))


def corpus() -> list[str]:
  """Every kind of sentence the model reads or writes, to train its tokenizer on."""
  texts = [t for family in TASKS.values() for t in family]
  for unit in catalogue.AUS:
    for side in words.SIDES:
      for adverb in (None,) + words.STRENGTHS:
        texts.append(Cue(unit.region, words.au_motion(unit, side, adverb), unit.number).text())
  for region in catalogue.REGIONS:
    for way in ("up", "down", "inward", "outward", "sideways", "up and inward", "down and outward"):
      texts.append(Cue(region, words.observed_motion(region, way, words.STRENGTHS[1]), None).text())
  for scheme, classes in emotions.SCHEMES.items():
    for label in classes:
      texts.append(format_answer(relabel(Answer((), label, reasoning((), label)), label, label)))
  rng = np.random.default_rng(0)
  for fine, protos in emotions.PROTOTYPES.items():
    for proto in protos:
      aus = np.zeros(catalogue.NUM_AUS, np.uint8)
      for a in proto:
        aus[catalogue.au_index(int(a.rstrip("L")))] = 1
      side = np.where(aus, features.SIDE_BOTH, 0).astype(np.uint8)
      for scheme in rng.permutation(list(emotions.SCHEMES))[:3]:
        texts.append(format_answer(answer_from_labels(aus, side, fine, scheme)))
      cues = []
      for a in proto:
        unit = catalogue.au(int(a.rstrip("L")))
        adverb = words.STRENGTHS[int(rng.integers(3))]
        cues.append(Cue(unit.region, words.au_motion(unit, "left" if a.endswith("L") else "both", adverb), unit.number))
      absent = (catalogue.AU_NUMBERS[int(rng.integers(catalogue.NUM_AUS))],)
      for _, instruction, answer in task_pairs(tuple(cues), fine, rng, absent_aus=absent):
        texts.append(instruction)
        texts.append(format_answer(relabel(answer, fine, scheme_label(fine, "composite"))))
  return texts
