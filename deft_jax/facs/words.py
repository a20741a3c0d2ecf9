"""Words for facial motion: which region, which way, how strongly.

Answers say "<region> <motion>", where the motion is an AU's verb phrase (catalogue.py) or,
for a motion no AU label names, a direction; a strength adverb goes in front of it when the
motion was measured. Strength is graded against the clip's noise, not in pixels, so that a
faint but clean motion and a large but noisy one are told apart the same way on every
dataset.
"""

from deft_jax.facs import catalogue

# Regions named by a plural noun take a plural verb ("brows move", "mouth moves").
PLURAL_REGIONS = frozenset({"brows", "eyes", "cheeks"})

# Signal-to-noise bands: below the first a confirmed motion is "slight", above the second
# "strong". The lowest confirmed motion sits at the dual constraint's own threshold.
STRENGTHS = ("slightly", "clearly", "strongly")
STRENGTH_BANDS = (8.0, 16.0)

SIDES = ("both", "left", "right")


def strength(amplitude: float, noise: float, bands: tuple[float, float] = STRENGTH_BANDS) -> str:
  """"slightly", "clearly" or "strongly" from a motion's amplitude over the noise level."""
  ratio = amplitude / max(noise, 1e-9)
  return STRENGTHS[int(ratio >= bands[0]) + int(ratio >= bands[1])]


def direction(dx: float, dy: float, half: str = "left") -> str:
  """Direction words of a displacement in image axes, seen on one half of the face.

  On a half ("left" or "right" of the image) horizontal motion is "inward" (towards the
  midline) or "outward"; on the midline ("centre") it is "sideways". A component counts
  when it is at least 40% of the other (about 22 degrees off an axis).
  """
  if half not in ("left", "right", "centre"):
    raise ValueError(f"half must be 'left', 'right' or 'centre', got {half!r}")
  vertical = "up" if dy < 0 else "down"
  if half == "centre":
    horizontal = "sideways"
  else:
    horizontal = "inward" if (dx > 0) == (half == "left") else "outward"
  ax, ay = abs(dx), abs(dy)
  if ax < 0.4 * ay:
    return vertical
  if ay < 0.4 * ax:
    return horizontal
  return f"{vertical} and {horizontal}"


def _verb(region: str, plural: str) -> str:
  return plural if region in PLURAL_REGIONS else plural + "s"


def side_words(side: str) -> str:
  """"" for both sides, else " on the left side" / " on the right side"."""
  if side not in SIDES:
    raise ValueError(f"side must be one of {SIDES}, got {side!r}")
  return "" if side == "both" else f" on the {side} side"


def au_motion(au: catalogue.ActionUnit, side: str = "both", adverb: str | None = None) -> str:
  """The motion words of an AU: "lower and draw together", "clearly pushes up on the left side"."""
  return f"{adverb + ' ' if adverb else ''}{au.motion}{side_words(side)}"


def observed_motion(region: str, direction_words: str, adverb: str, side: str = "both") -> str:
  """Motion words for a motion no AU label names: "clearly move up and inward"."""
  return f"{adverb} {_verb(region, 'move')} {direction_words}{side_words(side)}"
