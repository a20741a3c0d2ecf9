"""TFDS's own `tfds build` command, runnable without TensorFlow.

The `tfds` script cannot start without TensorFlow: its entry point imports every subcommand, and
the convert_format one evaluates `tf.train.Example` at import (tensorflow_datasets 4.9.x,
scripts/cli/convert_format_utils.py). `build` itself needs no TensorFlow, so this runs exactly it,
with TFDS's parser, flags and builder loading; array_record is the default file format here.

    deft-jax tfds build casme2 --manual_dir=DIR [any `tfds build` flag]
    deft-jax tfds build data_builders/casme2 --manual_dir=DIR

deft-jax's builders are found by name ("casme2", "casme2/t8_s64") or by their folder path from
any directory: TFDS itself finds a builder folder only relative to the current one.
"""

import os

from tensorflow_datasets.scripts.cli import build as tfds_build
from tensorflow_datasets.scripts.cli import cli_utils

from deft_jax.data import build

USAGE = """usage: deft-jax tfds build DATASET [--manual_dir=DIR] [--data_dir=DIR] [--config=NAME] [any tfds build flag]

TFDS's `tfds build`, without TensorFlow (array_record output). DATASET is a deft-jax builder
name (casme2, casme2/t8_s64, samm, smic, casme3, megc2019, synthetic_me, uni_mer) or a builder
folder (data_builders/casme2), from any directory. `deft-jax tfds build --help` lists TFDS's flags.

example: deft-jax tfds build casme2 --manual_dir=~/data/CASME2 --data_dir=~/tensorflow_datasets"""


# `tfds build` flags whose value may follow as the next word (a folder named like a builder).
VALUE_FLAGS = ("--data_dir", "--manual_dir", "--download_dir", "--extract_dir", "--config", "--imports", "-i")


def builder_folder(word: str) -> tuple[str, str | None] | None:
  """(folder of a deft-jax builder, its config or None) for a dataset word that names one and is
  not a path that exists here; None otherwise."""
  if word.startswith("-") or os.path.exists(word):
    return None
  known = build.known_datasets()
  name, _, config = word.rstrip("/").partition("/")
  if name not in known:  # a folder path: data_builders/casme2
    name, config = os.path.basename(word.rstrip("/")), ""
    if name not in known:
      return None
  import importlib  # pylint: disable=import-outside-toplevel
  module = importlib.import_module(build.builder_module(name))
  return os.path.dirname(os.path.abspath(module.__file__)), config or None


def resolve(argv: list[str]) -> list[str]:
  """The `tfds build` arguments with deft-jax builder names and folders made absolute paths."""
  out, extra = [], []
  for i, word in enumerate(argv):
    found = None if i and argv[i - 1] in VALUE_FLAGS else builder_folder(word)
    if found is None:
      out.append(word)
      continue
    folder, config = found
    out.append(folder)
    if config and not any(a == "--config" or a.startswith("--config=") for a in argv):
      extra.append(f"--config={config}")
  return out + extra


def main(argv: list[str]) -> None:
  """argv: the words after `tfds`, starting with the command (only `build`)."""
  if not argv or argv[0] in ("-h", "--help"):
    print(USAGE)
    return
  if argv[0] != "build":
    raise ValueError(f"only the build command is supported, got {' '.join(argv)}; see deft-jax tfds --help")
  argv = resolve(list(argv[1:]))
  if not any(a.startswith("--file_format") for a in argv):
    argv.append("--file_format=array_record")  # tfds defaults to tfrecord, which needs TensorFlow
  parse = cli_utils.make_flags_parser(tfds_build.Args, description="tfds build, without TensorFlow")
  parse(["tfds", *argv]).execute()
