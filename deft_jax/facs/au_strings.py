"""Action Unit strings as the MER datasets write them: "1+2+L4", "R12B", "AU4", "12.0".

A token is an optional side (L/R, before or after), an optional "AU", the AU number (Excel
may turn it into "12.0"), and an optional FACS intensity letter A-E. Sides are kept as
written: FACS codes them from the subject's point of view.
"""

import re

from deft_jax.facs import catalogue

SIDES = {"": "both", "L": "left", "R": "right"}
INTENSITIES = "ABCDE"  # FACS trace .. maximum -> 1..5; 0 when not written

_SEPARATORS = re.compile(r"[+,;\s]+")
_AU_SPACE = re.compile(r"AU\s+(?=\d)", re.IGNORECASE)  # "AU 4" is one token
_TOKEN = re.compile(r"(?P<pre>[LR]?)(?:AU)?(?P<number>\d+)(?:\.0+)?(?P<intensity>[A-E]?)(?P<post>[LR]?)",
                    re.IGNORECASE)


def parse_au_string(text) -> tuple[list[tuple[int, str, int]], list[str]]:
  """Parses an AU cell into (number, side, intensity) triples and the tokens it cannot read.

  side is "both", "left" or "right"; intensity is 0 (not written) or 1..5 (A..E). A token
  with an AU number outside `catalogue.AU_NUMBERS`, or "?" (coder unsure), is returned
  unparsed so the caller can report it. Empty or None gives ([], []).
  """
  text = _AU_SPACE.sub("AU", "" if text is None else str(text))
  parsed, unparsed = [], []
  for token in filter(None, _SEPARATORS.split(text)):
    match = _TOKEN.fullmatch(token)
    if not match or (match["pre"] and match["post"]):
      unparsed.append(token)
      continue
    number = int(match["number"])
    if number not in catalogue.AU_NUMBERS:
      unparsed.append(token)
      continue
    side = SIDES[(match["pre"] or match["post"]).upper()]
    intensity = INTENSITIES.index(match["intensity"].upper()) + 1 if match["intensity"] else 0
    parsed.append((number, side, intensity))
  return parsed, unparsed
