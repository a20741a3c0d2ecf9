"""The fold-parallel LOSO job: `deft-jax train` with a config that has a `folds` node.

Builds the data if needed, loads every clip, trains each configured model (DEFT and the peers)
on identical folds with the fold program (train/folds.py), and writes into the workdir:
  results.json        the first model's pooled scores (uf1, uar, num_test_clips, per_dataset),
                      the optimistic score beside it, wall time, and every model's summary;
  predictions.csv     the first model's per-clip log (dataset, subject, clip, truth, prediction);
  peers/NAME/         the same two files for every other model;
  epochs_NAME.npz     per-epoch probabilities of every fold's scored clips (to re-score);
  summary.md, report/ a table of all models (honest and optimistic) and `deft-jax report`.
In folds.mode "validation" no test clip is scored: the scores are nested-validation ones and
results.json says so (`protocol`), with the pooled validation curve over epochs.
"""

import dataclasses
import json
import os
import time

import numpy as np
import optax

from deft_jax.data import build, selection
from deft_jax.eval import fold_scores, log as log_lib
from deft_jax.facs import emotions
from deft_jax.train import fold_data, fold_models, folds as folds_lib, init_from, optimizer as optimizer_lib


def _data_source(builder, name: str, splits: str):
  try:
    return builder.as_data_source(split=splits)
  except ValueError as e:
    raise build.DatasetError(f"{name}: cannot read splits {splits!r} ({e})") from None


def source_of(cfg, builder):
  splits = cfg.data.train_split
  if cfg.data.test_split and cfg.data.test_split != cfg.data.train_split:
    splits = f"{cfg.data.train_split}+{cfg.data.test_split}"
  return _data_source(builder, cfg.data.name, splits)


ADVERSARY_TARGETS = ("none", "subject", "corpus")


def adversary_labels(target: str, clips) -> tuple[int, np.ndarray]:
  """(classes, (N,) index of each clip's subject or corpus): the domain adversary's targets."""
  names, labels = np.unique({"subject": clips.subject, "corpus": clips.dataset}[target], return_inverse=True)
  return len(names), labels.astype(np.int32)


def model_settings(cfg, name: str) -> dict:
  """Schedule and optimizer of one model: DEFT's from folds/optim, a peer's from peers.NAME."""
  if name == "deft":
    f = cfg.folds
    settings = dict(epochs=f.epochs, batch_size=f.batch_size, learning_rate=cfg.optim.learning_rate,
                    weight_decay=cfg.optim.weight_decay, warmup_epochs=f.warmup_epochs, ensemble=f.ensemble,
                    smoothing=f.label_smoothing, test_flip=f.test_flip, test_shift=f.test_shift,
                    average_epochs=f.average_epochs, ema=f.ema, prior=f.prior, pretrain=dict(f.pretrain),
                    adversary=f.adversary)
    if settings["adversary"] not in ADVERSARY_TARGETS:
      raise ValueError(f"folds.adversary must be one of {ADVERSARY_TARGETS}, got {settings['adversary']!r}")
    if settings["adversary"] != "none" and f.pretrain.epochs:
      raise ValueError("folds.adversary names the composite's subjects or corpora; it cannot also pretrain "
                       f"on {f.pretrain.data} (folds.pretrain.epochs={f.pretrain.epochs}): set one of them off")
  elif name in cfg.peers:
    settings = dict(cfg.peers[name])
  else:
    raise ValueError(f"folds.models: {name!r} is not a model; known: {fold_models.MODELS}")
  prior = settings.get("prior", "none")
  if prior not in fold_scores.PRIORS:
    where = "folds.prior" if name == "deft" else f"peers.{name}.prior"
    raise ValueError(f"{where} must be one of {fold_scores.PRIORS}, got {prior!r}")
  return settings


def optimizer(settings: dict, total_steps: int, warmup_steps: int, frozen=()):
  if settings.get("cosine", True):
    schedule = optax.warmup_cosine_decay_schedule(0.0, settings["learning_rate"],
                                                  max(min(warmup_steps, total_steps - 1), 1),
                                                  max(total_steps, 2))
  else:
    schedule = settings["learning_rate"]
  train = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=settings["weight_decay"]))
  return optax.multi_transform({"train": train, "frozen": optax.set_to_zero()},
                               lambda params: optimizer_lib.param_labels(params, tuple(frozen)))


PRETRAIN_FOLD = 1 << 20  # the pretraining model's random stream: no fold's


def pretrained(cfg, spec, clips, fields, settings: dict, mesh, log) -> dict:
  """Every trainable param after `folds.pretrain.epochs` of one model on `clips` (another
  corpus, e.g. synthetic_me/megc2019: no subject of the target's folds), by path tuple; the
  model reads the same batch `fields` as the folds' and keeps their schedule settings."""
  p = cfg.folds.pretrain
  data = {k: clips.arrays[k] for k in fields}
  every = np.ones((1, len(clips)), bool)
  steps = folds_lib.steps_per_epoch(every, settings["batch_size"])
  tx = optimizer(settings, steps * p.epochs, steps * p.warmup_epochs, spec.frozen)
  start = time.time()
  _, _, params = folds_lib.train_folds(
      spec, tx, data, folds_lib.sampling_weights(every, clips.label, cfg.folds.balance, clips.dataset),
      np.arange(min(8, len(clips)), dtype=np.int32)[None], folds_lib.Schedule(settings["batch_size"], steps, p.epochs),
      folds_lib.Augment(**cfg.folds.augment), cfg.seed, mesh, fold_ids=[PRETRAIN_FOLD], keep_params=True,
      on_epoch=lambda e, loss: log(f"pretrain on {p.data}: epoch {e + 1}/{p.epochs} loss {loss.mean():.4f} "
                                   f"({time.time() - start:.0f} s)"))
  return {k: v[0] for k, v in params.items()}


def run_model(cfg, name: str, settings: dict, clips, plan, tokenizer, mesh, pretrain_clips=None,
              log=lambda line: print(line, flush=True)) -> dict:
  """Trains `name` with its `model_settings` on every fold of `plan` (DEFT's folds starting from
  a model trained on `pretrain_clips` when given); returns its scores and per-epoch probabilities."""
  classes = emotions.SCHEMES[cfg.data.scheme]
  data = {k: v for k, v in clips.arrays.items() if k != "face" or (name == "deft" and cfg.model.structure.enabled)}
  if name == "deft":
    adversary = 0
    if settings["adversary"] != "none":
      adversary, data["adversary_label"] = adversary_labels(settings["adversary"], clips)
    spec = fold_models.deft(cfg, tokenizer, data, settings["smoothing"], adversary)
    if pretrain_clips is not None:
      spec = dataclasses.replace(spec, start={**(spec.start or {}),
                                              **pretrained(cfg, spec, pretrain_clips, data, settings, mesh, log)})
  else:
    data = {k: data[k] for k in ("flow", "label")}
    spec = fold_models.peer(name, len(classes), data, settings.get("smoothing", 0.0))
  ensemble = int(settings.get("ensemble", 1))
  weights = folds_lib.sampling_weights(plan.train, clips.label, cfg.folds.balance, clips.dataset)
  idx, mask = folds_lib.scored_indices(plan.scored)
  steps = folds_lib.steps_per_epoch(plan.train, settings["batch_size"])
  schedule = folds_lib.Schedule(settings["batch_size"], steps, settings["epochs"], settings.get("test_flip", False),
                                settings.get("test_shift", 0.0), settings.get("ema", 0.0))
  tx = optimizer(settings, steps * schedule.epochs, steps * settings.get("warmup_epochs", 0), spec.frozen)
  augment = folds_lib.Augment(**cfg.folds.augment)
  start = time.time()
  logits, losses = folds_lib.train_folds(
      spec, tx, data, np.tile(weights, (ensemble, 1)), np.tile(idx, (ensemble, 1)), schedule, augment,
      cfg.seed, mesh, on_epoch=lambda e, loss: log(f"{name}: epoch {e + 1}/{schedule.epochs} loss {loss.mean():.4f} "
                                                   f"({time.time() - start:.0f} s)"))
  seconds = time.time() - start
  e, f = logits.shape[0], plan.num_folds
  probs = fold_scores.softmax(logits).reshape(e, ensemble, f, *logits.shape[2:]).mean(1)
  prior = settings.get("prior", "none")
  if prior != "none":  # scoring only: the corpus (or the whole) class mix of the fold's training clips
    probs = fold_scores.prior_shift(probs, idx, plan.train, clips.label,
                                    clips.dataset if prior == "corpus" else np.zeros(len(clips.label)))
  return dict(name=name, settings=settings, steps_per_epoch=steps, probs=probs, idx=idx, mask=mask,
              losses=losses.reshape(e, ensemble, f).mean(1), seconds=seconds)


def summarise(cfg, out: dict, clips, plan, extra_clips: int = 0) -> dict:
  classes = emotions.SCHEMES[cfg.data.scheme]
  probs, idx, mask = out["probs"], out["idx"], out["mask"]
  average = int(out["settings"].get("average_epochs", 1))
  honest, optimistic, best, rows = fold_scores.score(probs, idx, mask, clips.label, clips.dataset, len(classes),
                                                     average)
  full = {k: v for k, v in honest["full"].items() if k != "num_clips"}
  validation = plan.mode == "validation"
  result = {
      "model": out["name"],
      "protocol": ("nested validation: every outer fold holds out a group of its training subjects and scores "
                   "them; no test clip is scored") if validation else
                  "MEGC2019: leave-one-subject-out, fixed schedule (" +
                  ("last epoch" if average == 1 else f"mean of the last {average} epochs") +
                  "), one confusion matrix pooled over folds",
      **full, "per_dataset": honest["per_dataset"], "scheme": cfg.data.scheme, "classes": list(classes),
      ("num_validation_predictions" if validation else "num_test_clips"): int(mask.sum()),
      "num_test_subjects": len({clips.subject[i] for i in rows["index"]}),
      "num_folds": plan.num_folds, "epochs": int(probs.shape[0]), "steps_per_epoch": out["steps_per_epoch"],
      "steps": int(probs.shape[0] * out["steps_per_epoch"]), "train_seconds": round(out["seconds"], 1),
      "settings": out["settings"], "seed": cfg.seed,
  }
  if extra_clips:
    result["extra_training"] = {"data": cfg.folds.extra.data, "split": cfg.folds.extra.split, "clips": extra_clips}
  if out["name"] == "deft" and cfg.model.llm_path:  # the pretrained base every fold read
    result["llm_base"] = init_from.base_fingerprint(cfg)
  if validation:
    result["validation_curve"] = fold_scores.curve(probs, idx, mask, clips.label, len(classes))
  else:
    result["optimistic"] = {"note": fold_scores.OPTIMISTIC_NOTE, "uf1": optimistic["full"]["uf1"],
                            "uar": optimistic["full"]["uar"],
                            "per_dataset": {k: {"uf1": v["uf1"], "uar": v["uar"]}
                                            for k, v in optimistic["per_dataset"].items()},
                            "mean_best_epoch": float(best.mean() + 1)}
  return result, rows


def write_model(workdir: str, cfg, out, result, rows, clips) -> None:
  classes = emotions.SCHEMES[cfg.data.scheme]
  os.makedirs(workdir, exist_ok=True)
  i = rows["index"]
  log_lib.write(os.path.join(workdir, "predictions.csv"), classes, [clips.dataset[k] for k in i],
                [clips.subject[k] for k in i], [clips.clip[k] for k in i], rows["truth"], rows["prediction"],
                rows["probs"])
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(result, f, indent=2)
  with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
    for e, loss in enumerate(out["losses"]):
      f.write(json.dumps({"step": (e + 1) * out["steps_per_epoch"], "loss": float(loss.mean())}) + "\n")
  np.savez_compressed(os.path.join(workdir, "epochs.npz"), probs=out["probs"].astype(np.float16), idx=out["idx"],
                      mask=out["mask"], labels=clips.label)


def table(results: list[dict]) -> str:
  validation = "optimistic" not in results[0]
  head = "| model | UF1 | UAR | " + ("" if validation else "optimistic UF1 | optimistic UAR | ") + \
      " | ".join(f"{d} UF1 | {d} UAR" for d in results[0]["per_dataset"]) + " | seconds |"
  lines = [head, "|" + "---|" * (head.count("|") - 1)]
  for r in results:
    cells = [r["model"], f"{r['uf1']:.4f}", f"{r['uar']:.4f}"]
    if not validation:
      cells += [f"{r['optimistic']['uf1']:.4f}", f"{r['optimistic']['uar']:.4f}"]
    cells += [f"{v[k]:.4f}" for v in r["per_dataset"].values() for k in ("uf1", "uar")]
    lines.append("| " + " | ".join(cells + [str(r["train_seconds"])]) + " |")
  return "\n".join(lines)


def other_corpus(cfg, node):
  """The data source of another corpus than the one under test (folds.pretrain, folds.extra):
  `node.data` in the job's data_dir, built from `node.manual_dir` if it needs building."""
  corpus = build.prepare(node.data, selection.data_dir(cfg), node.get("manual_dir") or None)
  return _data_source(corpus, node.data, node.split)


def run(cfg, workdir: str, builder=None) -> dict:
  """The whole LOSO of every model in cfg.folds.models; returns the first model's results."""
  from deft_jax.train import trainer  # pylint: disable=import-outside-toplevel
  models = tuple(cfg.folds.models)
  unknown = [m for m in models if m not in fold_models.MODELS]
  if not models or unknown:
    raise ValueError(f"folds.models: {unknown or 'none'}; choose from {fold_models.MODELS}")
  settings = {name: model_settings(cfg, name) for name in models}  # checked before a workdir or data is made
  if cfg.folds.extra.data and cfg.folds.extra.data.split(":")[0] == cfg.data.name.split(":")[0]:
    raise ValueError(f"folds.extra.data={cfg.folds.extra.data!r} is the dataset under test ({cfg.data.name}): "
                     "its clips would train the folds that score them")
  workdir = trainer.prepare_workdir(workdir)
  start = time.time()
  builder = builder or build.prepare(cfg.data.name, selection.data_dir(cfg), cfg.data.manual_dir or None)
  tokenizer = trainer.load_tokenizer(cfg, workdir) if "deft" in models else None
  face_size = cfg.model.structure.image_size if cfg.model.structure.enabled else 0
  clips = fold_data.load(source_of(cfg, builder), cfg.data.scheme, tokenizer, cfg.data.max_text_len, face_size,
                         cfg.folds.face_geometry, cfg.folds.centre_flow, cfg.folds.name_corpus)
  plan = folds_lib.plan(clips.subject, cfg.folds.mode, cfg.folds.num_folds, cfg.folds.val_groups, cfg.seed,
                        tuple(cfg.folds.subjects), cfg.folds.train_share)
  size = clips.arrays["flow"].shape[1]
  pretrain_clips, extra = None, ()
  if "deft" in models and cfg.folds.pretrain.epochs:
    pretrain_clips = fold_data.load(other_corpus(cfg, cfg.folds.pretrain), cfg.data.scheme, tokenizer,
                                    cfg.data.max_text_len, face_size, composite_size=size)
  if cfg.folds.extra.data:  # another corpus's clips in every fold's training set, never scored
    extra = fold_data.load(other_corpus(cfg, cfg.folds.extra), cfg.data.scheme, tokenizer, cfg.data.max_text_len,
                           clips.arrays["face"].shape[1], cfg.folds.face_geometry, cfg.folds.centre_flow,
                           cfg.folds.name_corpus, size)
    clips = fold_data.join(clips, extra, f"folds.extra.data={cfg.folds.extra.data}")
    plan = folds_lib.with_extra_training(plan, len(extra))
    print(f"{cfg.folds.extra.data}: {len(extra)} clips join every fold's training clips", flush=True)
  mesh = folds_lib.fold_mesh()
  print(f"{cfg.data.name}: {len(clips) - len(extra)} clips, {plan.num_folds} folds ({plan.mode}), "
        f"models {', '.join(models)}, {mesh.size} device(s)", flush=True)
  results = []
  for i, name in enumerate(models):
    out = run_model(cfg, name, settings[name], clips, plan, tokenizer, mesh, pretrain_clips)
    result, rows = summarise(cfg, out, clips, plan, len(extra))
    write_model(workdir if i == 0 else os.path.join(workdir, "peers", name), cfg, out, result, rows, clips)
    results.append(result)
    line = f"{name}: UF1 {result['uf1']:.4f} UAR {result['uar']:.4f}"
    if "optimistic" in result:
      line += f"   [optimistic, test-fold epoch choice: UF1 {result['optimistic']['uf1']:.4f} " \
              f"UAR {result['optimistic']['uar']:.4f}]"
    print(line + f"   ({result['train_seconds']} s)", flush=True)
  first = results[0]
  first["wall_seconds"] = round(time.time() - start, 1)
  first["models"] = {r["model"]: {k: r[k] for k in ("uf1", "uar", "per_dataset", "train_seconds")}
                     | ({"optimistic": r["optimistic"]} if "optimistic" in r else {}) for r in results}
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(first, f, indent=2)
  with open(os.path.join(workdir, "summary.md"), "w") as f:
    f.write(f"# {cfg.data.name}: {first['protocol']}\n\n{table(results)}\n\n"
            f"Wall time of the whole job: {first['wall_seconds']} s.\n"
            + ("" if plan.mode == "validation" else f"\n{fold_scores.OPTIMISTIC_NOTE}.\n"))
  if plan.mode == "test":
    from deft_jax.eval import report  # pylint: disable=import-outside-toplevel
    report.report(workdir)
  return first
