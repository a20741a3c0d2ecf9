"""AU strings as the MER datasets write them."""

import pytest

from deft_jax.facs.au_strings import parse_au_string


@pytest.mark.parametrize("text, parsed", [
    ("4+7", [(4, "both", 0), (7, "both", 0)]),
    ("R12", [(12, "right", 0)]),
    ("L10", [(10, "left", 0)]),
    ("AU4", [(4, "both", 0)]),
    ("AU 4", [(4, "both", 0)]),
    ("12B", [(12, "both", 2)]),
    ("R14A", [(14, "right", 1)]),
    ("r14e", [(14, "right", 5)]),
    ("12L", [(12, "left", 0)]),
    ("1+2+4+L7", [(1, "both", 0), (2, "both", 0), (4, "both", 0), (7, "left", 0)]),
    ("1, 2 4", [(1, "both", 0), (2, "both", 0), (4, "both", 0)]),
    ("12.0", [(12, "both", 0)]),
    (12.0, [(12, "both", 0)]),
    ("", []),
    (None, []),
])
def test_parses(text, parsed):
  assert parse_au_string(text) == (parsed, [])


@pytest.mark.parametrize("text, parsed, unparsed", [
    ("?", [], ["?"]),
    ("4+43", [(4, "both", 0)], ["43"]),  # AU43 is not in the catalogue
    ("L12R+6", [(6, "both", 0)], ["L12R"]),
    ("12.5+abc", [], ["12.5", "abc"]),
    ("12F", [], ["12F"]),
])
def test_reports_what_it_cannot_read(text, parsed, unparsed):
  assert parse_au_string(text) == (parsed, unparsed)
