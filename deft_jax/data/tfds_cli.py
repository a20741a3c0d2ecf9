"""TFDS's own `tfds build` command, runnable without TensorFlow.

The `tfds` script cannot start without TensorFlow: its entry point imports every subcommand, and
the convert_format one evaluates `tf.train.Example` at import (tensorflow_datasets 4.9.x,
scripts/cli/convert_format_utils.py). `build` itself needs no TensorFlow, so this runs exactly it,
with TFDS's parser, flags and builder loading; array_record is the default file format here.

    deft-jax tfds build data_builders/casme2 --manual_dir=DIR [any `tfds build` flag]
"""

from tensorflow_datasets.scripts.cli import build as tfds_build
from tensorflow_datasets.scripts.cli import cli_utils


def main(argv: list[str]) -> None:
  """argv: the words after `tfds`, starting with the command (only `build`)."""
  if not argv or argv[0] != "build":
    raise ValueError(f"only the build command is supported, got {' '.join(argv) or 'nothing'}")
  argv = list(argv[1:])
  if not any(a.startswith("--file_format") for a in argv):
    argv.append("--file_format=array_record")  # tfds defaults to tfrecord, which needs TensorFlow
  parse = cli_utils.make_flags_parser(tfds_build.Args, description="tfds build, without TensorFlow")
  parse(["tfds", *argv]).execute()
