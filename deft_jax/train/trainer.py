"""The training job: data -> sharded jit train step -> checkpoints -> held-out evaluation.

Resumes from the workdir's latest checkpoint (state, data position and all), so a run that
is killed and restarted logs the same losses as one that was not. On SIGTERM it finishes the
step, checkpoints and raises preemption.Preempted (deft-jax exits with preemption.EXIT_CODE).
"""

import json
import math
import os
import shutil
import time

import jax
import tqdm
from flax import traverse_util

from deft_jax.data import augment, build, pipeline, tokenizer as tokenizer_lib
from deft_jax.eval import evaluate
from deft_jax.models import hf
from deft_jax.train import checkpoint, init_from, preemption, sharding, state as state_lib
from deft_jax.train.step import make_train_step

METRICS = "metrics.jsonl"


class WorkdirError(RuntimeError):
  pass


def prepare_workdir(workdir: str) -> str:
  workdir = os.path.abspath(workdir)
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise WorkdirError(f"workdir {workdir} is a file, not a directory")
  os.makedirs(workdir, exist_ok=True)
  return workdir


def data_dir(cfg) -> str:
  return os.path.expanduser(cfg.data.data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"))


def load_tokenizer(cfg, workdir: str):
  """The configured tokenizer, or one trained on deft-jax's own text into the workdir.

  Trained aside and renamed into place, so processes sharing the workdir never read a
  half-written one (the first rename wins; the others load it).
  """
  path = cfg.data.tokenizer or (cfg.model.llm_path if cfg.model.llm_path else os.path.join(workdir, "tokenizer"))
  if not cfg.data.tokenizer and not cfg.model.llm_path and not os.path.isdir(path):
    aside = f"{path}.tmp-{os.getpid()}"
    tokenizer_lib.train_tokenizer(aside, cfg.data.tokenizer_vocab)
    try:
      os.rename(aside, path)
    except OSError:
      shutil.rmtree(aside, ignore_errors=True)
  return tokenizer_lib.load_tokenizer(path)


def labelled(source, scheme: str) -> list:
  """The clips of `source` that have a class in `scheme`."""
  return [c for c in pipeline.index_source(source, scheme) if c.label >= 0]


def pooled_records(cfg, builder):
  """The train and test splits as one source, and its labelled clips (for LOSO folds)."""
  splits = f"{cfg.data.train_split}+{cfg.data.test_split}"
  try:
    source = builder.as_data_source(split=splits)
  except ValueError as e:
    raise build.DatasetError(f"{cfg.data.name}: cannot read splits {splits!r} ({e})") from None
  return source, labelled(source, cfg.data.scheme)


def select_records(cfg, builder):
  """(train source, test source, test clips): the configured splits, or with
  data.holdout_subjects a LOSO fold of the pooled splits (those subjects are the test set)."""
  sources = builder.as_data_source()
  for split in (cfg.data.train_split, cfg.data.test_split):
    if split not in sources:
      raise build.DatasetError(f"{cfg.data.name}: no split {split!r}; it has {sorted(sources)}")
  holdout = set(cfg.data.holdout_subjects)
  if holdout:
    source, info = pooled_records(cfg, builder)
    unknown = sorted(holdout - {c.subject for c in info})
    if unknown:
      raise ValueError(f"data.holdout_subjects: no labelled clips of {unknown} in {cfg.data.name} "
                       f"({cfg.data.train_split}+{cfg.data.test_split})")
    train_info = [c for c in info if c.subject not in holdout]
    test_info = [c for c in info if c.subject in holdout]
    train_source = test_source = source
  else:
    train_source, test_source = sources[cfg.data.train_split], sources[cfg.data.test_split]
    train_info, test_info = labelled(train_source, cfg.data.scheme), labelled(test_source, cfg.data.scheme)
  return (pipeline.Subset(train_source, [c.index for c in train_info]),
          pipeline.Subset(test_source, [c.index for c in test_info]), test_info)


def check_batch(cfg, mesh) -> int:
  """The rows each process loads per step; names the setting that does not divide."""
  b, k, p = cfg.train.batch_size, cfg.train.grad_accum_steps, jax.process_count()
  axes = sharding.batch_sharding(mesh, sharding.rules(cfg)).spec[0] or ()
  rows = math.prod(mesh.shape[a] for a in ((axes,) if isinstance(axes, str) else axes))
  if b % p or b % k or (b // k) % rows:
    raise ValueError(f"train.batch_size={b} must split over {p} processes and into grad_accum_steps={k} "
                     f"micro-batches of a multiple of {rows} rows (the data-parallel devices)")
  return b // p


def load_pretrained_llm(cfg, state, mesh):
  """Puts a local HF checkpoint's weights into the LLM part of the params (LoRA stays fresh)."""
  _, loaded = hf.from_pretrained(cfg.model.llm_path, param_dtype=state_lib.dtype(cfg.model.param_dtype),
                                 mesh=mesh, rules=sharding.rules(cfg))
  flat = traverse_util.flatten_dict(state.params)
  for path, value in traverse_util.flatten_dict(loaded).items():
    flat[("llm",) + path] = value
  return state.replace(params=traverse_util.unflatten_dict(flat))


def trim_metrics(workdir: str, step: int) -> None:
  """Drops log lines past `step` (written by a run killed after its last checkpoint)."""
  path = os.path.join(workdir, METRICS)
  if jax.process_index() != 0 or not os.path.exists(path):
    return
  with open(path) as f:
    kept = [line for line in f if line.strip() and json.loads(line)["step"] <= step]
  with open(path + ".tmp", "w") as f:
    f.writelines(kept)
  os.replace(path + ".tmp", path)


def save(cfg, workdir, mngr, step, state, data_iter) -> None:
  checkpoint.save(mngr, step, state, data_iter, cfg)
  checkpoint.export_adapters(workdir, step, state.params, tuple(cfg.optim.frozen), cfg.train.keep_checkpoints)


def train(cfg, workdir: str) -> dict:
  """Runs the job of `cfg` in `workdir` (resuming from its last checkpoint) and returns results."""
  if "folds" in cfg:  # every fold's model in one compiled program (train/loso.py)
    from deft_jax.train import loso  # pylint: disable=import-outside-toplevel
    return loso.run(cfg, workdir)
  workdir = prepare_workdir(workdir)
  start = time.time()
  builder = build.prepare(cfg.data.name, data_dir(cfg), cfg.data.manual_dir or None)
  tokenizer = load_tokenizer(cfg, workdir)
  train_source, test_source, test_info = select_records(cfg, builder)

  mesh = sharding.make_mesh(cfg.mesh)
  rules = sharding.rules(cfg)
  per_process = check_batch(cfg, mesh)
  model = state_lib.make_model(cfg, tokenizer)
  rng = jax.random.key(cfg.seed)
  state, state_shardings = state_lib.create_state(cfg, model, mesh, cfg.train.steps, rng)
  if cfg.model.llm_path:
    state = load_pretrained_llm(cfg, state, mesh)
  state, _ = init_from.initialise(cfg, state, model.config)  # vision checkpoints, a stage-1 run

  preprocess = pipeline.Preprocess(tokenizer, cfg.data.scheme, cfg.data.max_text_len, train=True,
                                   answers=cfg.data.answers, photometric=augment.Photometric(**cfg.data.augment))
  data_iter = iter(pipeline.dataset(train_source, preprocess, per_process, seed=cfg.seed, train=True,
                                    process_index=jax.process_index(), process_count=jax.process_count()))
  mngr = checkpoint.manager(workdir, cfg.train.keep_checkpoints)
  if mngr.latest_step() is not None:
    abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, state_shardings)
    state = checkpoint.restore(mngr, mngr.latest_step(), abstract, data_iter)
  step = int(state.step)
  trim_metrics(workdir, step)

  train_step = make_train_step(model, dict(cfg.loss), state_shardings, mesh, rules=rules,
                               grad_accum_steps=cfg.train.grad_accum_steps, frozen=tuple(cfg.optim.frozen))
  writer = None
  if jax.process_index() == 0:  # tensorboardX imports torch when it is installed: only where it writes
    import tensorboardX  # pylint: disable=import-outside-toplevel
    writer = tensorboardX.SummaryWriter(os.path.join(workdir, "tensorboard"))
  with open(os.path.join(workdir, METRICS), "a") as log, preemption.Watch() as preempted, \
      tqdm.tqdm(total=cfg.train.steps, initial=step, desc="train", disable=jax.process_index() != 0) as bar:
    while step < cfg.train.steps:
      batch = sharding.global_batch(next(data_iter), mesh, rules)
      state, metrics = train_step(state, batch, jax.random.fold_in(rng, step))
      step += 1
      bar.update(1)
      if step % cfg.train.log_every == 0 or step == cfg.train.steps:
        metrics = {k: float(v) for k, v in metrics.items()}
        bar.set_postfix(loss=f"{metrics['loss']:.3f}")
        if writer:
          log.write(json.dumps({"step": step, **metrics}) + "\n")
          log.flush()
          for k, v in metrics.items():
            writer.add_scalar(f"train/{k}", v, step)
      stop = preempted(step)
      if stop or step % cfg.train.checkpoint_every == 0 or step == cfg.train.steps:
        save(cfg, workdir, mngr, step, state, data_iter)
      if stop:
        mngr.wait_until_finished()
        raise preemption.Preempted(step)
  mngr.wait_until_finished()
  train_seconds = time.time() - start

  results = evaluate.evaluate(cfg, model, state.params, tokenizer, test_source, test_info, mesh, workdir)
  results["train_seconds"] = round(train_seconds, 1)
  results["steps"] = step
  if cfg.data.holdout_subjects:
    results["holdout_subjects"] = list(cfg.data.holdout_subjects)
  if writer:
    for k in ("uf1", "uar", "accuracy"):
      writer.add_scalar(f"test/{k}", results[k], step)
    writer.close()
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump(results, f, indent=2)
  return results
