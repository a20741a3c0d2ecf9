"""The `deft-jax` command.

    deft-jax train --config configs/synthetic.py[:variant] --workdir DIR [--config.a.b=value ...]
    deft-jax build NAME [--manual_dir DIR] [--data_dir DIR]
"""

import argparse
import os
import sys

from absl import flags
from ml_collections import config_flags


class ConfigError(ValueError):
  pass


def load_config(argv: list[str]):
  """`--config FILE[:arg]` and `--config.a.b=value` overrides, on a locked ConfigDict."""
  argv = ["deft-jax"] + list(argv)
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file("config", flag_values=fv, lock_config=True, sys_argv=argv)
  try:
    fv(argv)
  except flags.UnrecognizedFlagError as e:
    raise ConfigError(f"unknown option {e.flagname!r}") from None
  except (AttributeError, KeyError) as e:
    field = next((a for a in argv if a.startswith("--config.")), "--config.?").split("=")[0]
    raise ConfigError(f"{field}: no such config field ({e})") from None
  except flags.Error as e:
    raise ConfigError(str(e)) from None
  if fv["config"].value is None:
    raise ConfigError("--config FILE is required")
  return fv.config


def _train(args, rest):
  from deft_jax.train import trainer  # pylint: disable=import-outside-toplevel
  cfg = load_config(rest)
  results = trainer.train(cfg, args.workdir)
  keys = ("uf1", "uar", "accuracy", "num_test_clips", "train_seconds")
  print(" ".join(f"{k}={results[k]:.4f}" if isinstance(results[k], float) else f"{k}={results[k]}" for k in keys))
  print(f"results: {os.path.join(os.path.abspath(args.workdir), 'results.json')}")


def _build(args, rest):
  from deft_jax.data import build  # pylint: disable=import-outside-toplevel
  if rest:
    raise ConfigError(f"unexpected arguments: {' '.join(rest)}")
  data_dir = os.path.expanduser(args.data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"))
  b = build.prepare(args.name, data_dir, args.manual_dir)
  print(f"{args.name}: {', '.join(f'{k}={v.num_examples}' for k, v in b.info.splits.items())} in {b.data_dir}")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="deft-jax", description=__doc__.split("\n")[0])
  sub = parser.add_subparsers(dest="command", required=True)
  p = sub.add_parser("train", help="train and evaluate from a config file")
  p.add_argument("--workdir", required=True)
  p.set_defaults(run=_train)
  p = sub.add_parser("build", help="build a TFDS dataset (synthetic_me, casme2, samm, smic, casme3, megc2019)")
  p.add_argument("name")
  p.add_argument("--manual_dir", default=None)
  p.add_argument("--data_dir", default=None)
  p.set_defaults(run=_build)
  args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
  try:
    args.run(args, rest)
  except Exception as e:  # pylint: disable=broad-except
    from deft_jax.data import build  # pylint: disable=import-outside-toplevel
    from deft_jax.train import trainer  # pylint: disable=import-outside-toplevel
    if isinstance(e, (ConfigError, build.DatasetError, trainer.WorkdirError, FileNotFoundError, ValueError)):
      print(f"deft-jax {args.command}: error: {e}", file=sys.stderr)
      return 2
    raise
  return 0


if __name__ == "__main__":
  sys.exit(main())
