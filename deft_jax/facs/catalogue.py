"""The Action Units that matter in micro-expressions.

Each AU carries its face region and the direction its skin moves in an aligned, upright
face crop, so that labels, rendered motion and measured flow can all be checked against
one table. Directions follow FACS (Ekman, Friesen & Hager, 2002). Coordinates: image axes (x right, y down); a direction is given for
the face's image-left half and mirrored for the image-right half.

The direction is signed: AU1 moves skin up (0, -1), AU15 down (0, 1); on the image-left
half +x points towards the midline, so AU4 (0.55, 0.85) draws the brows down and together
and AU20 (-1, 0) stretches the lip corners outwards. A flow that projects negatively on it
is the opposite motion, not weak evidence of the AU.
"""

import dataclasses

import numpy as np

REGIONS = ("brows", "eyes", "nose", "cheeks", "mouth", "chin")


@dataclasses.dataclass(frozen=True)
class ActionUnit:
  number: int
  name: str
  muscle: str
  region: str
  # The region's verb phrase, said after the region's name: "brows" + "lower and draw
  # together". It must not repeat the region (answers read "<region> <motion>").
  motion: str
  direction: tuple[float, float]  # signed (dx, dy) for the image-left half of the face
  # Where the skin moves, in canonical face coordinates (see regions.py): the anchor
  # landmark, an offset from it, and the spread of the displacement bump.
  anchor: str
  offset: tuple[float, float]
  spread: float
  bilateral: bool = True

  @property
  def tag(self) -> str:
    return f"AU{self.number}"

  def unit_direction(self, half: str = "left") -> np.ndarray:
    """Unit (dx, dy) of the skin's motion on the image-"left" or "right" half."""
    d = np.asarray(self.direction, np.float64) / np.hypot(*self.direction)
    return d * (-1.0, 1.0) if half == "right" and self.bilateral else d


AUS: tuple[ActionUnit, ...] = (
    ActionUnit(1, "inner brow raiser", "frontalis, pars medialis", "brows", "rise at the inner ends",
               (0.0, -1.0), "brow", (0.10, 0.0), 0.10),
    ActionUnit(2, "outer brow raiser", "frontalis, pars lateralis", "brows", "rise at the outer ends",
               (0.0, -1.0), "brow", (-0.12, 0.0), 0.10),
    ActionUnit(4, "brow lowerer", "corrugator supercilii, depressor supercilii", "brows",
               "lower and draw together", (0.55, 0.85), "brow", (0.04, 0.02), 0.11),
    ActionUnit(5, "upper lid raiser", "levator palpebrae superioris", "eyes", "widen as the upper lids rise",
               (0.0, -1.0), "eye", (0.0, -0.06), 0.07),
    ActionUnit(6, "cheek raiser", "orbicularis oculi, pars orbitalis", "cheeks", "rise and bunch below the eyes",
               (0.0, -1.0), "eye", (-0.02, 0.20), 0.11),
    ActionUnit(7, "lid tightener", "orbicularis oculi, pars palpebralis", "eyes",
               "narrow as the lower lids tighten", (0.0, -1.0), "eye", (0.0, 0.06), 0.06),
    ActionUnit(9, "nose wrinkler", "levator labii superioris alaeque nasi", "nose",
               "wrinkles upward", (0.3, -0.95), "nose", (-0.06, -0.10), 0.08),
    ActionUnit(10, "upper lip raiser", "levator labii superioris", "mouth", "lifts at the upper lip",
               (0.0, -1.0), "mouth", (0.10, -0.07), 0.08),
    ActionUnit(12, "lip corner puller", "zygomaticus major", "mouth",
               "pulls up and out at the corners", (-0.6, -0.8), "mouth_corner", (0.0, 0.0), 0.09),
    ActionUnit(14, "dimpler", "buccinator", "mouth", "tightens inward at the corners",
               (1.0, 0.0), "mouth_corner", (0.0, 0.0), 0.08),
    ActionUnit(15, "lip corner depressor", "depressor anguli oris", "mouth",
               "pulls down at the corners", (0.0, 1.0), "mouth_corner", (0.0, 0.02), 0.08),
    ActionUnit(17, "chin raiser", "mentalis", "chin", "pushes up", (0.0, -1.0),
               "chin", (0.0, 0.0), 0.12, bilateral=False),
    ActionUnit(20, "lip stretcher", "risorius", "mouth", "stretches sideways", (-1.0, 0.0),
               "mouth_corner", (0.0, 0.0), 0.08),
    ActionUnit(23, "lip tightener", "orbicularis oris", "mouth", "tightens and narrows",
               (1.0, 0.0), "mouth", (0.14, 0.0), 0.07),
    ActionUnit(24, "lip pressor", "orbicularis oris", "mouth", "presses the lips together", (0.0, -1.0),
               "mouth", (0.0, 0.08), 0.08, bilateral=False),
    ActionUnit(25, "lips part", "depressor labii inferioris", "mouth", "parts as the lower lip drops",
               (0.0, 1.0), "mouth", (0.0, 0.07), 0.07, bilateral=False),
    ActionUnit(26, "jaw drop", "masseter (relaxed)", "chin", "drops as the jaw opens", (0.0, 1.0),
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
