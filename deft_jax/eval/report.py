"""`deft-jax report WORKDIR`: figures and a README.md summary of a trained workdir.

Reads results.json, predictions.csv, metrics.jsonl and answers.jsonl as they are there, and
the latest checkpoint to measure the experts' contributions on the test set (falling back to
the figures in results.json when there is no checkpoint or no dataset). Writes into
WORKDIR/report/: confusion.png, curves.png, au_cues.png, experts.png, experts.json, README.md.
"""

import json
import os
import sys

from deft_jax.data import build, pipeline, selection
from deft_jax.eval import answer_scores, evaluate, experts, log as log_lib, plots, restore, score
from deft_jax.facs import emotions
from deft_jax.train import metrics_log


class ReportError(ValueError):
  pass


def _scheme(results: dict, where: str) -> str:
  if "scheme" in results:
    return results["scheme"]
  for name, classes in emotions.SCHEMES.items():
    if list(classes) == results.get("classes"):
      return name
  raise ReportError(f"{where}: classes {results.get('classes')} match no scheme of deft_jax/facs/emotions.py")


def _jsonl(path) -> list[dict]:
  """The records of a JSON-lines file; a torn last line (power loss) is dropped with a warning."""
  try:
    return metrics_log.read(path)
  except metrics_log.LogError as e:
    raise ReportError(str(e)) from None


def experts_on_test_set(workdir) -> tuple[dict, str] | None:
  """Contributions measured with the latest checkpoint on the test split, or None without data."""
  trained = restore.load(workdir)
  cfg = trained.cfg
  b = build.builder(cfg.data.name, selection.data_dir(cfg), cfg.data.manual_dir or None)
  if not b.is_prepared():
    return None
  _, source, info = selection.select_records(cfg, b)  # the run's own test set (a LOSO fold too)
  preprocess = pipeline.Preprocess(trained.tokenizer, cfg.data.scheme, cfg.data.max_text_len, train=False)
  size = cfg.train.eval_batch_size
  probs = evaluate.predict(trained.model, trained.params, source, preprocess, size, trained.mesh)
  without = evaluate.without_each_expert(trained.model, trained.params, source, preprocess, size, trained.mesh)
  summary = experts.summarize(probs, without, [c.label for c in info], emotions.SCHEMES[cfg.data.scheme])
  return summary, f"measured on the {len(info)} test clips with the checkpoint of step {trained.step}"


def _fmt(x) -> str:
  return "n/a" if x is None else f"{x:.4f}"


def _scores(workdir, results, where, path) -> list[str]:
  log_path = os.path.join(workdir, "predictions.csv")
  if not os.path.isfile(log_path):
    return ["No predictions.csv in the workdir."]
  scored = score.score_log(log_lib.read(log_path, _scheme(results, where)))
  plots.confusion({"full": scored["full"], **scored["per_dataset"]}, scored["classes"], path("confusion.png"))
  lines = [f"Pooled over all {scored['num_clips']} test clips of predictions.csv; the per-dataset rows are "
           "slices of the same pooled predictions.", "",
           "| part | UF1 | UAR | accuracy | clips |", "|---|---|---|---|---|"]
  for name, s in {"full": scored["full"], **scored["per_dataset"]}.items():
    lines.append(f"| {name} | {s['uf1']:.4f} | {s['uar']:.4f} | {s['accuracy']:.4f} | {s['num_clips']} |")
  full = scored["full"]
  lines += ["", "| class | F1 | recall | support |", "|---|---|---|---|"]
  lines += [f"| {c} | {f:.4f} | {r:.4f} | {n} |"
            for c, f, r, n in zip(scored["classes"], full["f1"], full["recall"], full["support"])]
  return lines + ["", "![confusion matrices](confusion.png)"]


def loss_weights(workdir) -> dict[str, float] | None:
  """The `loss` weights of the config saved with the newest checkpoint, None when there is none."""
  folder = os.path.join(workdir, "checkpoints")
  steps = sorted((int(d) for d in os.listdir(folder) if d.isdigit()), reverse=True) if os.path.isdir(folder) else []
  for step in steps:
    try:
      with open(os.path.join(folder, str(step), "config", "metadata")) as f:
        return dict(json.load(f)["loss"])
    except (OSError, ValueError, KeyError, TypeError):
      continue
  return None


def _curves(workdir, path, results: dict | None = None) -> list[str]:
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  # A resumed run appends; the last line of a step is the one that counts.
  rows = _jsonl(metrics_path) if os.path.isfile(metrics_path) else []
  rows = sorted({r["step"]: r for r in rows}.values(), key=lambda r: r["step"])
  if not rows:
    return ["No metrics.jsonl (or it is empty)."]
  test = {k: results[k] for k in ("uf1", "uar", "accuracy") if isinstance((results or {}).get(k), (int, float))}
  plots.curves(rows, path("curves.png"), weights=loss_weights(workdir), test=test or None)
  last = rows[-1]
  return [f"{len(rows)} logged steps, last step {last['step']}: "
          + ", ".join(f"{k} {v:.4f}" for k, v in last.items() if k != "step"), "", "![training curves](curves.png)"]


def _answers(workdir, results, path) -> list[str]:
  """Re-scored from answers.jsonl when it is there, else the scores in results.json."""
  answers_path = os.path.join(workdir, "answers.jsonl")
  a = results.get("answers")
  if os.path.isfile(answers_path):
    records, classes = _jsonl(answers_path), results["classes"]
    a = answer_scores.score([answer_scores.parse(r["text"]) for r in records],
                            [classes.index(r["truth"]) for r in records], [classes.index(r["head"]) for r in records],
                            [set(r["labelled_aus"]) for r in records], classes)
  if not a:
    return ["No generated answers (train.generate_examples was 0)."]
  cues = a["au_cues"]
  clips = results.get("num_test_clips")
  lines = [f"{a['count']} answer{'' if a['count'] == 1 else 's'} generated for {clips if clips is not None else '?'} test clips"
           + (" (set train.generate_examples=-1 to answer every one)" if clips and a["count"] < clips else "")
           + f", {a['parse_failures']} did not parse, "
           f"{a.get('inconsistent', 0)} reasoned against their own cues or emotion. Emotion in the answer vs the label: "
           f"accuracy {a['emotion']['accuracy']:.4f}, UF1 {a['emotion']['uf1']:.4f}, UAR {a['emotion']['uar']:.4f} "
           f"({a['emotion']['no_class']} named no class); agreement with the classifier head "
           f"{_fmt(a['agreement_with_head'])}. AU cues vs labelled AUs: precision {_fmt(cues['precision'])}, "
           f"recall {_fmt(cues['recall'])}.", "",
           "| AU | precision | recall | cited | labelled |", "|---|---|---|---|---|"]
  lines += [f"| {au} | {_fmt(s['precision'])} | {_fmt(s['recall'])} | {s['cited']} | {s['labelled']} |"
            for au, s in cues["per_au"].items()]
  if cues["per_au"]:
    plots.au_cues(cues["per_au"], path("au_cues.png"), answers=a["count"], clips=results.get("num_test_clips"))
    lines += ["", "![AU cue precision and recall](au_cues.png)"]
  return lines


def _measured_experts(workdir) -> tuple[tuple[dict, str] | None, str]:
  """experts_on_test_set, or None and why: a damaged checkpoint must not stop the report
  when results.json holds the figures."""
  if not restore.has_checkpoint(workdir):
    return None, "no checkpoint"
  try:
    return experts_on_test_set(workdir), "no test data here"
  except Exception as e:  # pylint: disable=broad-except  # Orbax, tensorstore and json raise many kinds
    why = f"the checkpoint in {restore.checkpoint_dir(workdir)} could not be read: {type(e).__name__}: " \
          f"{(str(e).strip().splitlines() or [''])[0][:200]}"
    print(f"warning: {why}", file=sys.stderr)
    return None, why


def _experts(workdir, results, path) -> list[str]:
  measured, why = _measured_experts(workdir)
  if measured is None and "experts" in results:
    measured = results["experts"], f"from results.json ({why})"
  if not measured:
    return ["Not available: no checkpoint with test data, and none in results.json."]
  summary, source = measured
  with open(path("experts.json"), "w") as f:
    json.dump({"source": source, "experts": summary}, f, indent=2)
  plots.experts(summary, path("experts.png"))
  lines = [f"Drop in the probability of the predicted class when one expert is left out, {source}.", "",
           "| expert | mean drop | UF1 without | UAR without |", "|---|---|---|---|"]
  lines += [f"| {e} | {s['mean_drop']:.4f} | {s['uf1_without']:.4f} | {s['uar_without']:.4f} |"
            for e, s in summary.items()]
  return lines + ["", "![expert contributions](experts.png)"]


def report(workdir, out_dir=None) -> dict[str, str]:
  """Writes the report and returns {name: path} of the files written."""
  workdir = os.path.abspath(os.fspath(workdir))
  results_path = os.path.join(workdir, "results.json")
  if not os.path.isfile(results_path):
    raise ReportError(f"{workdir}: no results.json; train and evaluate into it first (deft-jax train --workdir)")
  with open(results_path) as f:
    try:
      results = json.load(f)
    except json.JSONDecodeError as e:
      raise ReportError(f"{results_path}: not JSON ({e})") from None
  if "classes" not in results:
    raise ReportError(f"{results_path}: no field 'classes'")
  out_dir = os.fspath(out_dir or os.path.join(workdir, "report"))
  os.makedirs(out_dir, exist_ok=True)
  files = {}
  path = lambda name: files.setdefault(name, os.path.join(out_dir, name))
  md = [f"# Report: {workdir}", "",
        f"Test set: {results.get('num_test_clips', '?')} clips of {results.get('num_test_subjects', '?')} subjects; "
        f"classes: {', '.join(results['classes'])}; {results.get('steps', '?')} training steps."]
  sections = (("Scores", _scores(workdir, results, results_path, path)),
              ("Training curves", _curves(workdir, path, results)),
              ("Generated answers", _answers(workdir, results, path)),
              ("Expert contributions", _experts(workdir, results, path)))
  for title, lines in sections:
    md += ["", f"## {title}", ""] + lines
  with open(path("README.md"), "w") as f:
    f.write("\n".join(md) + "\n")
  return files
