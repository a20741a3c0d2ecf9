"""The `deft-jax` command.

    deft-jax train --config configs/synthetic.py[:variant] --workdir DIR [--config.a.b=value ...]
    deft-jax build NAME [--manual_dir DIR] [--data_dir DIR]
    deft-jax score LOG.csv [--scheme composite] [--out JSON]
    deft-jax predict VIDEO_OR_FRAMES --checkpoint WORKDIR [--onset N --apex N --offset N] [--face centre] [--out DIR]
    deft-jax report WORKDIR [--out DIR]
    deft-jax sweep --config configs/ablations.py --workdir DIR [--config.a.b=value ...]
    deft-jax convert-llm FILE.gguf OUT
    deft-jax aot --topology {8xh100,v5e-256} --model {qwen2.5-7b,llama-3.1-8b} [--batch N] [--mesh data=1,fsdp=8,tensor=1]

Exit codes: 0 done, 2 bad input (one line on stderr), 75 stopped by SIGTERM after saving a
checkpoint (run the same command again to resume).
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
  from deft_jax.train import distributed, trainer  # pylint: disable=import-outside-toplevel
  cfg = load_config(rest)
  distributed.initialize(cfg)  # before anything touches a device
  results = trainer.train(cfg, args.workdir)
  keys = ("uf1", "uar", "accuracy", "num_test_clips", "train_seconds")
  print(" ".join(f"{k}={results[k]:.4f}" if isinstance(results[k], float) else f"{k}={results[k]}" for k in keys))
  print(f"results: {os.path.join(os.path.abspath(args.workdir), 'results.json')}")


def _sweep(args, rest):
  import jax  # pylint: disable=import-outside-toplevel
  from deft_jax.train import distributed, sweep  # pylint: disable=import-outside-toplevel
  cfg = load_config(rest)
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
  b = build.prepare(args.name, data_dir, args.manual_dir)
  print(f"{args.name}: {', '.join(f'{k}={v.num_examples}' for k, v in b.info.splits.items())} in {b.data_dir}")


def _tfds(args, rest):
  from deft_jax.data import tfds_cli  # pylint: disable=import-outside-toplevel
  tfds_cli.main([args.tfds_command, *rest])


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
                           face=args.face, out_dir=args.out)
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


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="deft-jax", description=__doc__.split("\n")[0])
  sub = parser.add_subparsers(dest="command", required=True)
  p = sub.add_parser("train", help="train and evaluate from a config file")
  p.add_argument("--workdir", required=True)
  p.set_defaults(run=_train)
  p = sub.add_parser("sweep", help="run every point of the config's `sweep` grid, then tabulate")
  p.add_argument("--workdir", required=True)
  p.set_defaults(run=_sweep)
  p = sub.add_parser("aot", help="compile the train step for a named topology from shapes; print its memory")
  p.add_argument("--topology", required=True, help="8xh100 or v5e-256")
  p.add_argument("--model", required=True, help="qwen2.5-7b, llama-3.1-8b, or config (the --config's LLM)")
  p.add_argument("--batch", type=int, default=None, help="global batch (default: the topology's)")
  p.add_argument("--mesh", default=None, help="data=N,fsdp=N,tensor=N (default: the topology's)")
  p.add_argument("--seq", type=int, default=1024, help="sequence length, expert tokens included (default 1024)")
  p.add_argument("--cpu", action="store_true", help="compile for as many fake CPU devices instead")
  p.set_defaults(run=_aot)
  p = sub.add_parser("build", help="build a TFDS dataset (synthetic_me, casme2, samm, smic, casme3, megc2019)")
  p.add_argument("name")
  p.add_argument("--manual_dir", default=None)
  p.add_argument("--data_dir", default=None)
  p.set_defaults(run=_build)
  p = sub.add_parser("tfds", help="TFDS's `tfds build` (same flags), without TensorFlow", add_help=False)
  p.add_argument("tfds_command", help="build")
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
  p.add_argument("--face", choices=("haar", "centre"), default="haar",
                 help="haar: detect the face on the onset frame (error if none); centre: take the centred "
                      "square, for frames that are face crops already")
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
  try:
    args.run(args, rest)
  except Exception as e:  # pylint: disable=broad-except
    from deft_jax.data import build  # pylint: disable=import-outside-toplevel
    from deft_jax.train import preemption, trainer  # pylint: disable=import-outside-toplevel
    if isinstance(e, preemption.Preempted):
      print(f"deft-jax {args.command}: {e}", file=sys.stderr)
      return preemption.EXIT_CODE
    if isinstance(e, (ConfigError, build.DatasetError, trainer.WorkdirError, FileNotFoundError, ValueError)):
      print(f"deft-jax {args.command}: error: {e}", file=sys.stderr)
      return 2
    raise
  return 0


if __name__ == "__main__":
  sys.exit(main())
