"""Bad input ends in one line on stderr naming it, and exit 2, in a fresh process (issue 15, items 8 and 14).

Each command fails before any training, dataset build or compile.
"""

import os
import pathlib
import subprocess
import sys

import pytest

from deft_jax.data import corpus_errors, clip_frames, manual

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args, cwd=ROOT):
  env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}
  env.pop("DEFT_JAX_VERBOSE", None)
  return subprocess.run([sys.executable, "-m", "deft_jax.cli", *args], capture_output=True, text=True, cwd=cwd,
                        env=env, timeout=120)


def one_line_error(out, *phrases):
  assert out.returncode == 2, (out.returncode, out.stderr[-3000:])
  lines = out.stderr.strip().splitlines()
  assert len(lines) == 1, out.stderr[-3000:]
  assert "Traceback" not in out.stderr
  for phrase in phrases:
    assert phrase in lines[0], lines[0]
  return lines[0]


TRAIN = ("train", "--workdir")


@pytest.mark.parametrize("args, phrases", [
    (("--config", "configs/nope.py"), ("--config configs/nope.py: no config file", "configs/nope.py")),
    (("--config", "configs/synthetic.py:big"), ("unknown variant 'big'",)),
    (("--config", "configs/synthetic.py", "--config.optim.frozen=5"),
     ("--config.optim.frozen=5: expected a tuple of str",)),
    (("--config", "configs/synthetic.py", "--config.train.stepz=3"),
     ("--config.train.stepz: no such config field ('stepz' Did you mean \"steps\" instead of \"stepz\"?)",)),
    (("--config", "configs/synthetic.py:tiny", "--config.model.llm_path=/nonexistent/llm"),
     ("--config.model.llm_path=/nonexistent/llm: /nonexistent/llm does not exist",)),
])
def test_train_config_mistakes(tmp_path, args, phrases):
  line = one_line_error(run_cli(*TRAIN, str(tmp_path / "w"), *args), *phrases)
  assert line.startswith("deft-jax train: error: ")
  assert "\\n" not in line  # no raw repr of a multi-line message


def test_build_without_manual_dir(tmp_path):
  one_line_error(run_cli("build", "casme2", "--data_dir", str(tmp_path)),
                 "casme2 is built from your own copy of the dataset: no --manual_dir given", "--manual_dir DIR")
  one_line_error(run_cli("build", "casme2", "--data_dir", str(tmp_path), "--manual_dir", str(tmp_path / "none")),
                 f"--manual_dir {tmp_path / 'none'} does not exist or is empty")


def test_tfds_build_without_manual_dir(tmp_path):
  out = run_cli("tfds", "build", "casme2", f"--data_dir={tmp_path}")
  assert out.returncode == 2 and "casme2 is built from your own copy of the dataset" in out.stderr, out.stderr[-2000:]
  assert "Traceback" not in out.stderr and "Unknown size" not in out.stdout


def test_smic_clip_of_one_frame_names_the_folder(tmp_path):
  folder = tmp_path / "s1_ne_01"
  folder.mkdir()
  (folder / "image13050.bmp").write_bytes(b"")
  clip = manual.Clip("s1_ne_01", "s1", "smic", str(folder), clip_frames.frame_files(folder), None, None, None, "negative")
  with pytest.raises(corpus_errors.Skip, match=r"s1_ne_01 holds one frame \(image13050.bmp\); a clip needs an onset and a later"):
    manual._frame_range(clip, [])  # pylint: disable=protected-access


@pytest.mark.parametrize("args, phrases", [
    (("--help",), ("train", "build", "tfds", "score", "report", "--config.a.b=value", "deft-jax COMMAND --help")),
    (("train", "--help"), ("--config FILE[:variant]", "--workdir DIR", "--config.a.b=value", "examples:",
                           "deft-jax train --config configs/synthetic.py:tiny")),
    (("sweep", "--help"), ("--config FILE[:variant]", "--config.a.b=value", "deft-jax sweep --config")),
    (("tfds", "--help"), ("deft-jax tfds build DATASET", "--manual_dir", "example:")),
    (("build", "--help"), ("--manual_dir", "--stop_on_bad_frame", "deft-jax build casme2 --manual_dir")),
    (("aot", "--help"), ("jax-cuda12-plugin", "--cpu")),
])
def test_every_command_explains_itself(args, phrases):
  """Issue 15, item 9: `train --help` listed only --workdir; `tfds --help` failed."""
  out = run_cli(*args)
  assert out.returncode == 0, out.stderr[-2000:]
  for phrase in phrases:
    assert phrase in out.stdout, (phrase, out.stdout)


def test_tfds_build_finds_deft_builders_from_any_directory(tmp_path):
  """Issue 15, item 10: "Dataset casme2 not found" outside the checkout root."""
  for name in ("casme2", "data_builders/casme2", "casme2/t8_s28"):
    out = run_cli("tfds", "build", name, f"--data_dir={tmp_path / 'd'}", cwd=tmp_path)
    assert out.returncode == 2 and "casme2 is built from your own copy of the dataset" in out.stderr, out.stderr[-800:]
  assert (tmp_path / "d" / "casme2" / "t8_s28").is_dir()


def test_build_output_is_quiet(tmp_path):
  """Issue 15, item 14: no TFDS "Variant folder" warnings or "Unknown size" banner."""
  out = run_cli("build", "casme2", "--data_dir", str(tmp_path))
  assert "Variant folder" not in out.stderr and "Unknown size" not in out.stdout


def test_unfinished_build_folders_are_removed(tmp_path):
  """Issue 15, item 10: `incomplete.*` folders of a killed build were left behind."""
  from deft_jax.data import build
  b = build.builder("synthetic_me/tiny", tmp_path)
  config_dir = pathlib.Path(b.data_dir).parent
  leftover = config_dir / f"incomplete.0123abcd_{pathlib.Path(b.data_dir).name}"
  (leftover / "sub").mkdir(parents=True)
  other = config_dir / "incomplete.0123abcd_0.9.0"  # another version's: not ours to remove
  other.mkdir()
  build.prepare("synthetic_me/tiny", tmp_path)
  assert not leftover.exists() and other.exists()


def test_a_repeated_example_key_is_named_with_both_examples(tmp_path):
  """Issue 15, item 8: TFDS's duplicate-key message needs TensorFlow ("No module named 'tensorflow'")."""
  from deft_jax.data import build
  examples = [("c1", {"source": "casme2", "subject": "sub01", "clip_id": b"c1"}),
              ("c2", {"source": "casme2", "subject": "sub02", "clip_id": b"c2"}),
              ("c1", {"source": "samm", "subject": "006", "clip_id": b"c1"})]
  with pytest.raises(build.DatasetError, match=r"d: example key 'c1' is used twice, by example 0 \(source casme2, "
                                               r"subject sub01, clip_id c1\) and by example 2 \(source samm, subject 006"):
    list(build.unique_keys(examples, "d"))
  b = build.builder("synthetic_me/tiny", tmp_path)
  real = type(b)._generate_examples  # every builder made by build.builder yields through the check
  assert b._generate_examples is not real  # pylint: disable=protected-access


def test_no_transformers_notice_without_pytorch(tmp_path):
  """Issue 15, item 14: "[transformers] PyTorch was not found" is noise to a deft-jax user."""
  from deft_jax.train import workdir_lock
  code = ("import sys; sys.modules['torch'] = None; from deft_jax import cli; "  # as if PyTorch were not installed
          f"sys.exit(cli.main(['train', '--config', 'configs/synthetic.py:tiny', '--workdir', {str(tmp_path)!r}]))")
  held = workdir_lock.acquire(str(tmp_path))  # the run stops after importing the trainer (and transformers)
  try:
    env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}
    env.pop("DEFT_JAX_VERBOSE", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
  finally:
    held.release()
  assert "PyTorch was not found" not in out.stderr + out.stdout
  one_line_error(out, "is in use by pid")
