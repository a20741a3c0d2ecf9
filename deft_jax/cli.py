"""The `deft-jax` command.

    deft-jax train --config configs/synthetic.py[:variant] --workdir DIR [--config.a.b=value ...]
    deft-jax build NAME [--manual_dir DIR] [--data_dir DIR]
    deft-jax score LOG.csv [--scheme composite] [--out JSON]
    deft-jax predict VIDEO_OR_FRAMES --checkpoint WORKDIR [--onset N --apex N --offset N] [--face centre] [--out DIR]
                     [--face-index N] [--head similarity|affine|nose|none]
    deft-jax report WORKDIR [--out DIR]
    deft-jax sweep --config configs/ablations.py --workdir DIR [--config.a.b=value ...]
    deft-jax convert-llm FILE.gguf OUT
    deft-jax aot --topology {8xh100,v5e-256} --model {qwen2.5-7b,llama-3.1-8b} [--batch N] [--mesh data=1,fsdp=8,tensor=1]

Exit codes: 0 done, 2 bad input (one line on stderr), 75 stopped by SIGTERM after saving a
checkpoint (run the same command again to resume). Library warnings (TFDS, Orbax, transformers)
are hidden; DEFT_JAX_VERBOSE=1 shows them.
"""

import argparse
import functools
import importlib.util
import os
import re
import sys

from absl import flags
from ml_collections import config_flags


class ConfigError(ValueError):
  pass


def _config_spec(argv: list[str]) -> tuple[str | None, list[str]]:
  """(the FILE[:variant] of --config, the other arguments)."""
  spec, rest, i = None, [], 0
  while i < len(argv):
    a = argv[i]
    if a == "--config":
      if i + 1 >= len(argv):
        raise ConfigError("--config needs a value: --config FILE[:variant]")
      spec, i = argv[i + 1], i + 2
      continue
    if a.startswith("--config="):
      spec = a.split("=", 1)[1]
    else:
      rest.append(a)
    i += 1
  return spec, rest


def config_from_file(spec: str):
  """get_config(variant) of the config file `spec` = FILE[:variant], errors as one line."""
  path, _, variant = spec.partition(":")
  if not os.path.isfile(path):
    raise ConfigError(f"--config {spec}: no config file {os.path.abspath(path)}")
  name = "deft_jax_config_" + re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
  module_spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except Exception as e:  # pylint: disable=broad-except  # the file's own error, named
    raise ConfigError(f"{path}: cannot load it ({type(e).__name__}: {e})") from None
  if not callable(getattr(module, "get_config", None)):
    raise ConfigError(f"{path}: defines no get_config(variant) function")
  try:
    return module.get_config(*([variant] if variant else []))
  except (ValueError, KeyError, TypeError) as e:  # an unknown variant, named by the file
    raise ConfigError(f"--config {spec}: {e.args[0] if e.args else e}") from None


def _check_types(default, cfg, overrides: list[str]) -> None:
  """An override keeps its field's type: `--config.optim.frozen=5` is refused, not a TypeError later."""
  for arg in overrides:
    field = arg.split("=", 1)[0][len("--config."):]
    old, new = default, cfg
    for part in field.split("."):
      old, new = old[part], new[part]
    if isinstance(old, bool) or old is None or isinstance(new, type(old)):
      ok = not (isinstance(old, tuple) and old and not all(isinstance(x, type(old[0])) for x in new))
    else:
      ok = isinstance(old, float) and isinstance(new, int) and not isinstance(new, bool)
    if not ok:
      shape = (f"a tuple of {type(old[0]).__name__}, like {old!r}" if isinstance(old, tuple) and old
               else f"{type(old).__name__}, like {old!r}")
      raise ConfigError(f"{arg}: expected {shape}; got {new!r} ({type(new).__name__})")


def load_config(argv: list[str]):
  """`--config FILE[:variant]` and `--config.a.b=value` overrides, on a locked ConfigDict.

  Every mistake (no file, unknown variant, misspelt field, wrong type) is a ConfigError whose
  message is one line naming it.
  """
  spec, rest = _config_spec(list(argv))
  if spec is None:
    raise ConfigError("--config FILE[:variant] is required")
  default = config_from_file(spec)
  fv = flags.FlagValues()
  try:
    config_flags.DEFINE_config_dict("config", default.copy_and_resolve_references(), flag_values=fv,
                                    lock_config=True, sys_argv=["deft-jax", *rest])
    fv(["deft-jax", *rest])
  except flags.UnrecognizedFlagError as e:
    raise ConfigError(f"unknown option {e.flagname!r}") from None
  except (AttributeError, KeyError) as e:
    field = next((a for a in rest if a.startswith("--config.")), "--config.?").split("=")[0]
    while e.args and isinstance(e.args[0], Exception):  # ConfigDict wraps the KeyError in an AttributeError
      e = e.args[0]
    text = " ".join(str(e.args[0] if e.args else e).split())  # "'stepz' Did you mean "steps" instead of "stepz"?"
    raise ConfigError(f"{field}: no such config field ({text})") from None
  except flags.Error as e:
    raise ConfigError(" ".join(str(e).split())) from None
  _check_types(default, fv.config, [a for a in rest if a.startswith("--config.")])
  return fv.config


# Config fields that name a local folder (in the configs of deft-jax, when set).
PATH_FIELDS = ("model.llm_path", "data.tokenizer", "data.manual_dir", "model.structure.checkpoint",
               "model.texture.checkpoint", "train.init_from")


def check_paths(cfg) -> None:
  """Every folder the config names exists, checked before any work (a typo would otherwise
  surface later as a vaguer error, e.g. "no tokenizer files")."""
  for field in PATH_FIELDS:
    try:
      value = functools.reduce(lambda c, k: c[k], field.split("."), cfg)
    except (KeyError, AttributeError):
      continue
    if value and not os.path.isdir(os.path.expanduser(value)):
      what = "does not exist" if not os.path.exists(os.path.expanduser(value)) else "is not a folder"
      raise ConfigError(f"--config.{field}={value}: {os.path.abspath(os.path.expanduser(value))} {what}")


def _train(args, rest):
  cfg = load_config(rest)
  check_paths(cfg)
  from deft_jax.train import distributed, folds, trainer  # pylint: disable=import-outside-toplevel
  if "folds" in cfg:
    folds.one_cpu_device_per_core()
  distributed.initialize(cfg)  # before anything touches a device
  results = trainer.train(cfg, args.workdir)
  keys = [k for k in ("uf1", "uar", "accuracy", "num_test_clips", "num_validation_predictions", "train_seconds")
          if k in results]
  print(" ".join(f"{k}={results[k]:.4f}" if isinstance(results[k], float) else f"{k}={results[k]}" for k in keys))
  print(f"results: {os.path.join(os.path.abspath(args.workdir), 'results.json')}")


def _sweep(args, rest):
  cfg = load_config(rest)
  check_paths(cfg)
  import jax  # pylint: disable=import-outside-toplevel
  from deft_jax.train import distributed, folds, sweep  # pylint: disable=import-outside-toplevel
  if "folds" in cfg:
    folds.one_cpu_device_per_core()
  distributed.initialize(cfg)
  if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):  # the points compile the same programs
    jax.config.update("jax_compilation_cache_dir", os.path.join(os.path.abspath(args.workdir), "jax_cache"))
  sweep.run(cfg, args.workdir)
  print(f"table: {os.path.join(os.path.abspath(args.workdir), 'results.md')}")


def _aot(args, rest):
  from deft_jax.train import aot  # pylint: disable=import-outside-toplevel
  if rest:
    cfg = load_config(rest)
  else:
    from configs import synthetic  # pylint: disable=import-outside-toplevel
    cfg = synthetic.get_config()
  result = aot.compile_step(cfg, args.topology, args.model, batch=args.batch, mesh_sizes=aot.parse_mesh(args.mesh),
                            seq_len=args.seq, force_cpu=args.cpu)
  aot.print_result(result)


def _build(args, rest):
  from deft_jax.data import build  # pylint: disable=import-outside-toplevel
  if rest:
    raise ConfigError(f"unexpected arguments: {' '.join(rest)}")
  data_dir = os.path.expanduser(args.data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"))
  b = build.prepare(args.name, data_dir, args.manual_dir, stop_on_bad_frame=args.stop_on_bad_frame)
  print(f"{args.name}: {', '.join(f'{k}={v.num_examples}' for k, v in b.info.splits.items())} in {b.data_dir}")


def _tfds(args, rest):
  from deft_jax.data import tfds_cli  # pylint: disable=import-outside-toplevel
  tfds_cli.main([args.tfds_command, *rest])


class _Formatter(argparse.RawDescriptionHelpFormatter):
  """Help texts keep their line breaks (the examples)."""


CONFIG_HELP = """\
the config:
  --config FILE[:variant]   a config file under configs/ (get_config(variant) builds it), e.g.
                            configs/synthetic.py, configs/synthetic.py:tiny, configs/stage2_real.py:casme2
  --config.a.b=value        override one field of it (any number of them); the field must exist
                            and keep its type: --config.train.steps=200, --config.optim.frozen='("^llm/",)'

examples:
  deft-jax {cmd} --config configs/synthetic.py:tiny --workdir /tmp/t --config.train.steps=5
  deft-jax {cmd} --config configs/stage2_real.py:casme2 --workdir ~/runs/casme2 --config.data.manual_dir=~/data/CASME2
"""

AOT_HELP = """\
needs the topology's XLA compiler plugin (no GPU or TPU), kept out of the project's install:
  pip install --target ~/aot-deps "libtpu==0.0.42.*" "jax-cuda12-plugin==0.10.2" "jax-cuda12-pjrt==0.10.2"
  PYTHONPATH=~/aot-deps JAX_PLATFORMS=cpu deft-jax aot --topology 8xh100 --model qwen2.5-7b
without it the command stops; --cpu compiles for fake CPU devices instead (the CPU compiler's
figures, several times the accelerator's). An optional --config FILE[:variant] [--config.a.b=value]
sets the experts (default configs/synthetic.py). See docs/SCALING.md.
"""

BUILD_HELP = """\
examples:
  deft-jax build synthetic_me/small
  deft-jax build casme2 --manual_dir ~/data/CASME2
  deft-jax build megc2019 --manual_dir ~/data/megc2019   (holding casme2/, samm/, smic/)
"""

HELP_MORE = """
Each command's own help: deft-jax COMMAND --help (deft-jax tfds --help for tfds build).
"""


def _config_arguments(p) -> None:
  """--config and --workdir as argparse shows them; --config.a.b=value overrides pass through."""
  p.add_argument("--config", required=True, metavar="FILE[:variant]", help="the config file (and variant)")
  p.add_argument("--workdir", required=True, metavar="DIR", help="checkpoints, logs and results go here")


def _no_rest(rest):
  if rest:
    raise ConfigError(f"unexpected arguments: {' '.join(rest)}")


def _score(args, rest):
  import json  # pylint: disable=import-outside-toplevel
  from deft_jax.eval import score  # pylint: disable=import-outside-toplevel
  _no_rest(rest)
  scored = score.score_file(args.log, args.scheme)
  print(score.format_scores(scored))
  if args.out:
    with open(args.out, "w") as f:
      json.dump(scored, f, indent=2)
    print(f"scores: {os.path.abspath(args.out)}")


def _predict(args, rest):
  from deft_jax.eval import predict  # pylint: disable=import-outside-toplevel
  _no_rest(rest)
  result = predict.predict(args.path, args.checkpoint, onset=args.onset, apex=args.apex, offset=args.offset,
                           face=args.face, face_index=args.face_index, head=args.head, out_dir=args.out,
                           progress=True, compilation_cache=True)
  print(f"emotion: {result['emotion']} ("
        + ", ".join(f"{c} {p:.3f}" for c, p in result["probabilities"].items()) + ")")
  print(f"onset {result['onset']['index']}, apex {result['apex']['index']}"
        + (f" (spotted: {result['apex']['spotted']})" if result["apex"]["spotted"] else "")
        + f", offset {result['offset']['index']} of {result['frames']} frames")
  print("answer:\n" + (result["answer"]["text"].strip() or "(empty)"))
  print(f"prediction: {result['files']['json']} {result['files']['png']}")


def _convert_llm(args, rest):
  from deft_jax.models import gguf  # pylint: disable=import-outside-toplevel
  _no_rest(rest)
  out = gguf.convert(args.gguf, args.out)
  print(f"converted: {out} (set --config.model.llm_path={out})")


def _report(args, rest):
  from deft_jax.eval import report  # pylint: disable=import-outside-toplevel
  _no_rest(rest)
  files = report.report(args.workdir, args.out)
  print(f"report: {files['README.md']} ({', '.join(n for n in files if n != 'README.md')})")


# Exceptions that mean bad input (exit 2, one line), by module: a module that was never
# imported raised none, so the check imports nothing (a config mistake fails fast).
BAD_INPUT = {
    "deft_jax.data.build": ("DatasetError",),
    "deft_jax.train.trainer": ("WorkdirError",),
    "deft_jax.train.workdir_lock": ("WorkdirLocked",),
    "deft_jax.errors": ("CheckpointError",),
    "deft_jax.train.metrics_log": ("LogError",),
}


def _bad_input_errors() -> tuple:
  found = [getattr(sys.modules[m], n) for m, names in BAD_INPUT.items() if m in sys.modules for n in names]
  return (ConfigError, FileNotFoundError, ValueError, *found)


def quiet() -> None:
  """Silences library notices that are noise to a user (DEFT_JAX_VERBOSE=1 keeps them):
  transformers' "PyTorch was not found" advice, TFDS's "Variant folder ... has no
  dataset_info.json" and Orbax's missing _CHECKPOINT_METADATA warnings (absl WARNING). Errors
  still print; deft-jax's own warnings go to stderr directly."""
  if os.environ.get("DEFT_JAX_VERBOSE"):
    return
  os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
  os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
  from absl import logging as absl_logging  # pylint: disable=import-outside-toplevel
  absl_logging.set_verbosity(absl_logging.ERROR)


def main(argv=None) -> int:
  quiet()
  parser = argparse.ArgumentParser(prog="deft-jax", description="deft-jax: DEFT-LLM micro-expression recognition "
                                   "in JAX. Commands:",
                                   epilog=__doc__.split("\n", 1)[1] + HELP_MORE, formatter_class=_Formatter)
  sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
  p = sub.add_parser("train", help="train and evaluate from a config file", formatter_class=_Formatter,
                     usage="deft-jax train --config FILE[:variant] --workdir DIR [--config.a.b=value ...]",
                     description="Trains the config's job in DIR (resuming from its last checkpoint) and "
                                 "evaluates it on the held-out clips.", epilog=CONFIG_HELP.format(cmd="train"))
  _config_arguments(p)
  p.set_defaults(run=_train)
  p = sub.add_parser("sweep", help="run every point of the config's `sweep` grid, then tabulate", formatter_class=_Formatter,
                     usage="deft-jax sweep --config FILE[:variant] --workdir DIR [--config.a.b=value ...]",
                     description="Runs every point of the config's `sweep` grid as its own training in "
                                 "DIR/<point>, then writes DIR/results.md.", epilog=CONFIG_HELP.format(cmd="sweep"))
  _config_arguments(p)
  p.set_defaults(run=_sweep)
  p = sub.add_parser("aot", help="compile the train step for a named topology from shapes; print its memory",
                     formatter_class=_Formatter, epilog=AOT_HELP)
  p.add_argument("--topology", required=True, help="8xh100 or v5e-256")
  p.add_argument("--model", required=True, help="qwen2.5-7b, llama-3.1-8b, or config (the --config's LLM)")
  p.add_argument("--batch", type=int, default=None, help="global batch (default: the topology's)")
  p.add_argument("--mesh", default=None, help="data=N,fsdp=N,tensor=N (default: the topology's)")
  p.add_argument("--seq", type=int, default=1024, help="sequence length, expert tokens included (default 1024)")
  p.add_argument("--cpu", action="store_true", help="compile for as many fake CPU devices instead")
  p.set_defaults(run=_aot)
  p = sub.add_parser("build", help="build a TFDS dataset (synthetic_me, casme2, samm, smic, casme3, megc2019)",
                     formatter_class=_Formatter, epilog=BUILD_HELP)
  p.add_argument("name", help="a dataset, or dataset/config (e.g. casme2/t8_s128); the configs are in "
                              "data_builders/NAME")
  p.add_argument("--manual_dir", default=None, help="the folder holding your copy of a licence-gated dataset "
                                                    "(all but synthetic_me and uni_mer)")
  p.add_argument("--data_dir", default=None, help="where datasets are written (default $TFDS_DATA_DIR or "
                                                  "~/tensorflow_datasets)")
  p.add_argument("--stop_on_bad_frame", action="store_true",
                 help="stop the build at a frame image that does not decode whole (default: skip its clip)")
  p.set_defaults(run=_build)
  p = sub.add_parser("tfds", help="TFDS's `tfds build` (same flags), without TensorFlow", add_help=False)
  p.add_argument("tfds_command", nargs="?", default="--help", help="build")
  p.set_defaults(run=_tfds)
  p = sub.add_parser("score", help="re-score a prediction log (dataset,subject,clip,truth,prediction CSV)")
  p.add_argument("log")
  p.add_argument("--scheme", default="composite", help="class scheme of the log (deft_jax/facs/emotions.py)")
  p.add_argument("--out", default=None, help="also write the scores as JSON here")
  p.set_defaults(run=_score)
  p = sub.add_parser("predict", help="predict the micro-expression of a face video or a folder of frames")
  p.add_argument("path", help="a video file OpenCV reads, or a folder of frame images")
  p.add_argument("--checkpoint", required=True, help="the workdir of a training run")
  p.add_argument("--onset", type=int, default=0, help="onset frame position, from 0 (default 0)")
  p.add_argument("--apex", type=int, default=None, help="apex frame position (default: spotted from motion)")
  p.add_argument("--offset", type=int, default=None, help="offset frame position (default: the last frame)")
  p.add_argument("--face", choices=("dlib", "haar", "centre"), default="dlib",
                 help="dlib: detect the face on the onset frame, fit 68 landmarks and align (error if none); "
                      "haar: crop OpenCV's Haar box; centre: take the centred square, for frames that are face "
                      "crops already")
  p.add_argument("--face-index", type=int, default=0,
                 help="which face when several are found: 0 the largest (default), 1 the next, ...")
  p.add_argument("--head", choices=("similarity", "affine", "nose", "none"), default="similarity",
                 help="head motion taken out of the flow: a similarity or affine fit outside the AU regions, "
                      "the nose tip's flow, or none")
  p.add_argument("--out", default=None, help="output folder (default WORKDIR/predict/<name of PATH>)")
  p.set_defaults(run=_predict)
  p = sub.add_parser("convert-llm", help="a GGUF file -> a local Hugging Face folder (model.llm_path)")
  p.add_argument("gguf", help="the .gguf file (read by transformers, which needs the gguf package)")
  p.add_argument("out", help="output folder: config.json, model.safetensors, tokenizer")
  p.set_defaults(run=_convert_llm)
  p = sub.add_parser("report", help="figures and a README.md summary of a workdir")
  p.add_argument("workdir")
  p.add_argument("--out", default=None, help="output folder (default WORKDIR/report)")
  p.set_defaults(run=_report)
  args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
  if getattr(args, "config", None) is not None:  # load_config reads it with the overrides
    rest = ["--config", args.config, *rest]
  try:
    args.run(args, rest)
  except Exception as e:  # pylint: disable=broad-except
    preemption = sys.modules.get("deft_jax.train.preemption")
    if preemption and isinstance(e, preemption.Preempted):
      print(f"deft-jax {args.command}: {e}", file=sys.stderr)
      return preemption.EXIT_CODE
    if isinstance(e, _bad_input_errors()):
      print(f"deft-jax {args.command}: error: {' '.join(str(e).split())}", file=sys.stderr)  # one line
      return 2
    raise
  return 0


if __name__ == "__main__":
  sys.exit(main())
