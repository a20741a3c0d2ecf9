"""Emotions, their typical AU combinations, and the class schemes of the MER benchmarks.

AU prototypes follow the typical pairings of Ekman & Friesen's EMFACS; class schemes follow
the MER benchmarks (MEGC2019 composite, CASME II, SAMM, CAS(ME)^3).
"""

# Prototypes: each a tuple of AU specs; "12L" is a unilateral (image-left) AU.
PROTOTYPES: dict[str, tuple[tuple[str, ...], ...]] = {
    "happiness": (("6", "12"), ("12",), ("6", "12", "25")),
    "surprise": (("1", "2", "5", "26"), ("1", "2", "5"), ("1", "2", "26")),
    "disgust": (("9", "10"), ("4", "9"), ("4", "10")),
    "repression": (("14",), ("15", "17"), ("14", "17")),
    "sadness": (("1", "4", "15"), ("1", "4")),
    "anger": (("4", "7"), ("4", "7", "23"), ("4", "23")),
    "contempt": (("12L",), ("14L",), ("12L", "14L")),
    "fear": (("1", "2", "4", "5", "20"), ("1", "4", "20")),
}

NEGATIVE = ("repression", "anger", "contempt", "disgust", "fear", "sadness")


def _tendencies() -> dict[int, dict[str, float]]:
  """AU -> {emotion: weight}: how often the AU appears in each emotion's prototypes, the
  weights of one AU summing to 1 (a frequency reading of the EMFACS pairings above)."""
  counts: dict[int, dict[str, float]] = {}
  for emotion, protos in PROTOTYPES.items():
    for proto in protos:
      for spec in proto:
        number = int(spec.rstrip("LR"))
        counts.setdefault(number, {}).setdefault(emotion, 0.0)
        counts[number][emotion] += 1.0 / len(protos)
  return {n: {e: w / sum(c.values()) for e, w in sorted(c.items(), key=lambda x: -x[1])}
          for n, c in sorted(counts.items())}


# AU -> emotions it tends towards, strongest first.
TENDENCIES: dict[int, dict[str, float]] = _tendencies()


def tendency(aus) -> dict[str, float]:
  """Emotion scores of a set of AU numbers: the sum of each AU's tendencies, best first."""
  scores: dict[str, float] = {}
  for number in aus:
    for emotion, weight in TENDENCIES.get(int(number), {}).items():
      scores[emotion] = scores.get(emotion, 0.0) + weight
  return dict(sorted(scores.items(), key=lambda x: -x[1]))

# Class schemes: name -> ordered class names. Emotions a scheme lacks map to -1 (CASME II
# drops fear and sadness; MEGC2019 drops "others").
SCHEMES: dict[str, tuple[str, ...]] = {
    "composite": ("negative", "positive", "surprise"),
    "casme2-5": ("happiness", "disgust", "repression", "surprise", "others"),
    "samm-5": ("anger", "contempt", "happiness", "surprise", "others"),
    "casme3-3": ("negative", "positive", "surprise"),
    "casme3-4": ("negative", "positive", "surprise", "others"),
    "casme3-7": ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "others"),
}

_COARSE = {"happiness": "positive", "positive": "positive", "surprise": "surprise",
           "negative": "negative", **{e: "negative" for e in NEGATIVE}}


def coarse(emotion: str) -> str | None:
  """3-class composite label of a fine emotion, or None where MEGC2019 drops it (others)."""
  return _COARSE.get(emotion.strip().lower())


def class_name(emotion: str, scheme: str) -> str | None:
  """The class `scheme` puts a fine emotion in, or None when it has none: schemes over the
  composite classes (composite, casme3-3, casme3-4) read it through `coarse`, the others keep
  it. Records store the fine emotion only; every scheme is applied here, at read time."""
  classes = SCHEMES[scheme]
  emotion = emotion.strip().lower()
  name = emotion if emotion == "others" or classes[:3] != SCHEMES["composite"] else coarse(emotion)
  return name if name in classes else None


def label(emotion: str, scheme: str) -> int:
  """Index of `emotion` in `scheme`, or -1 when the scheme has no such class."""
  name = class_name(emotion, scheme)
  return -1 if name is None else SCHEMES[scheme].index(name)
