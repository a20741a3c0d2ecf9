"""The README tells a newcomer what they need (issue 15, item 12)."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _readme() -> str:
  with open(os.path.join(ROOT, "README.md")) as f:
    return f.read()


def test_score_names_the_file_the_main_job_writes():
  text = _readme()
  main = re.search(r"deft-jax train --config configs/synthetic.py --workdir (\S+)", text)
  scored = re.search(r"deft-jax score (\S+)", text)
  assert main and scored and scored[1] == f"{main[1]}/predictions.csv", (main, scored)


def test_each_sweep_says_how_long_it_runs():
  text = _readme()
  for variant in re.findall(r"deft-jax sweep --config configs/ablations.py(:\w+)?", text):
    assert re.search(rf"`ablations.py{variant}`[^.]*?(about )?\d+ (minutes|hours?)", text) or \
        re.search(rf"ablations.py{variant} --workdir \S+ +# \d+ minutes", text), variant


def test_real_stage_one_says_it_needs_the_other_corpus():
  text = _readme()
  assert re.search(r"every target but casme3 aligns on\s+CAS\(ME\)\^3", text)


def test_aot_example_says_what_to_install():
  text = _readme()
  example = text.index("deft-jax aot --topology 8xh100 --model qwen2.5-7b")
  assert '"jax-cuda12-plugin==' in text[example:example + 600]
