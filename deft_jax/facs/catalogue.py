"""The Action Units that matter in micro-expressions.

Each AU carries its face region and the direction its skin moves in an aligned, upright
face crop, so that labels, rendered motion and measured flow can all be checked against
one table. Directions follow FACS (Ekman, Friesen & Hager, 2002) as summarised in
shared/REFERENCE.md. Coordinates: image axes (x right, y down); a direction is given for
the face's image-left half and mirrored for the image-right half.
"""

import dataclasses

REGIONS = ("brows", "eyes", "nose", "cheeks", "mouth", "chin")


@dataclasses.dataclass(frozen=True)
class ActionUnit:
  number: int
  name: str
  muscle: str
  region: str
  motion: str  # plain words, used in answers
  direction: tuple[float, float]  # unit-ish (dx, dy) for the image-left half of the face
  # Where the skin moves, in canonical face coordinates (see regions.py): the anchor
  # landmark, an offset from it, and the spread of the displacement bump.
  anchor: str
  offset: tuple[float, float]
  spread: float
  bilateral: bool = True

  @property
  def tag(self) -> str:
    return f"AU{self.number}"


AUS: tuple[ActionUnit, ...] = (
    ActionUnit(1, "inner brow raiser", "frontalis, pars medialis", "brows", "inner brows rise",
               (0.0, -1.0), "brow", (0.10, 0.0), 0.10),
    ActionUnit(2, "outer brow raiser", "frontalis, pars lateralis", "brows", "outer brows rise",
               (0.0, -1.0), "brow", (-0.12, 0.0), 0.10),
    ActionUnit(4, "brow lowerer", "corrugator supercilii, depressor supercilii", "brows",
               "brows lower and draw together", (0.55, 0.85), "brow", (0.04, 0.02), 0.11),
    ActionUnit(5, "upper lid raiser", "levator palpebrae superioris", "eyes", "upper lids rise",
               (0.0, -1.0), "eye", (0.0, -0.06), 0.07),
    ActionUnit(6, "cheek raiser", "orbicularis oculi, pars orbitalis", "cheeks", "cheeks rise",
               (0.0, -1.0), "eye", (-0.02, 0.20), 0.11),
    ActionUnit(7, "lid tightener", "orbicularis oculi, pars palpebralis", "eyes",
               "lower lids tighten upward", (0.0, -1.0), "eye", (0.0, 0.06), 0.06),
    ActionUnit(9, "nose wrinkler", "levator labii superioris alaeque nasi", "nose",
               "nose wrinkles upward", (0.3, -0.95), "nose", (-0.06, -0.10), 0.08),
    ActionUnit(10, "upper lip raiser", "levator labii superioris", "mouth", "upper lip rises",
               (0.0, -1.0), "mouth", (0.10, -0.07), 0.08),
    ActionUnit(12, "lip corner puller", "zygomaticus major", "mouth",
               "lip corners pull up and out", (-0.6, -0.8), "mouth_corner", (0.0, 0.0), 0.09),
    ActionUnit(14, "dimpler", "buccinator", "mouth", "lip corners tighten inward",
               (1.0, 0.0), "mouth_corner", (0.0, 0.0), 0.08),
    ActionUnit(15, "lip corner depressor", "depressor anguli oris", "mouth",
               "lip corners pull down", (0.0, 1.0), "mouth_corner", (0.0, 0.02), 0.08),
    ActionUnit(17, "chin raiser", "mentalis", "chin", "chin pushes up", (0.0, -1.0),
               "chin", (0.0, 0.0), 0.12, bilateral=False),
    ActionUnit(20, "lip stretcher", "risorius", "mouth", "lips stretch sideways", (-1.0, 0.0),
               "mouth_corner", (0.0, 0.0), 0.08),
    ActionUnit(23, "lip tightener", "orbicularis oris", "mouth", "lips tighten and narrow",
               (1.0, 0.0), "mouth", (0.14, 0.0), 0.07),
    ActionUnit(24, "lip pressor", "orbicularis oris", "mouth", "lips press together", (0.0, -1.0),
               "mouth", (0.0, 0.08), 0.08, bilateral=False),
    ActionUnit(25, "lips part", "depressor labii inferioris", "mouth", "lower lip drops",
               (0.0, 1.0), "mouth", (0.0, 0.07), 0.07, bilateral=False),
    ActionUnit(26, "jaw drop", "masseter (relaxed)", "chin", "jaw drops", (0.0, 1.0),
               "chin", (0.0, -0.05), 0.16, bilateral=False),
)

AU_NUMBERS: tuple[int, ...] = tuple(au.number for au in AUS)
NUM_AUS = len(AUS)
_BY_NUMBER = {au.number: au for au in AUS}


def au(number: int) -> ActionUnit:
  try:
    return _BY_NUMBER[number]
  except KeyError:
    raise KeyError(f"AU{number} is not in the catalogue; known: {list(AU_NUMBERS)}") from None


def au_index(number: int) -> int:
  """Position of an AU in the multi-hot vectors stored by every builder."""
  return AU_NUMBERS.index(au(number).number)
