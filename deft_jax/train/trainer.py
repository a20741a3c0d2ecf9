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

from deft_jax.data import augment, build, pipeline, selection, tokenizer as tokenizer_lib
from deft_jax.eval import evaluate
from deft_jax.train import checkpoint, init_from, metrics_log, preemption, sharding, state as state_lib, workdir_lock
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


def check_batch(cfg, mesh) -> int:
  """The rows each process loads per step; names the setting that does not divide."""
  b, k, p = cfg.train.batch_size, cfg.train.grad_accum_steps, jax.process_count()
  axes = sharding.batch_sharding(mesh, sharding.rules(cfg)).spec[0] or ()
  rows = math.prod(mesh.shape[a] for a in ((axes,) if isinstance(axes, str) else axes))
  if b % p or b % k or (b // k) % rows:
    raise ValueError(f"train.batch_size={b} must split over {p} processes and into grad_accum_steps={k} "
                     f"micro-batches of a multiple of {rows} rows (the data-parallel devices)")
  return b // p


def trim_metrics(workdir: str, step: int) -> None:
  """Drops log lines past `step` (written by a run killed after its last checkpoint)."""
  path = os.path.join(workdir, METRICS)
  if jax.process_index() != 0 or not os.path.exists(path):
    return
  kept = [r for r in metrics_log.read(path) if r["step"] <= step]  # a torn last line is dropped
  with open(path + ".tmp", "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in kept)
  os.replace(path + ".tmp", path)


def resume(mngr, state, state_shardings, data_iter, total_steps: int):
  """The state of the newest checkpoint that restores (and says so), or `state` for a fresh run."""
  abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, state_shardings)
  restored = checkpoint.restore_latest_good(mngr, state_lib.checkpointed(abstract), data_iter)
  if restored is None:
    return state
  if jax.process_index() == 0:
    print(f"resumed from step {restored[1]} of {total_steps} ({os.path.join(os.fspath(mngr.directory), str(restored[1]))})",
          flush=True)
  return state.replace(**restored[0])


class TrainClock:
  """Seconds of training summed over the runs that led to the state (a resumed run adds its
  time to that of the runs up to the checkpoint it resumed from), kept per checkpoint step in
  WORKDIR/train_seconds.json."""

  FILE = "train_seconds.json"

  def __init__(self, workdir: str, start: float):
    self.path, self.start, self.before = os.path.join(workdir, self.FILE), start, 0.0

  def _read(self) -> dict:
    try:
      with open(self.path) as f:
        return json.load(f)
    except (OSError, ValueError):
      return {}

  def resume(self, step: int) -> None:
    self.before = float(self._read().get(str(step), 0.0)) if step else 0.0

  def total(self) -> float:
    return self.before + time.time() - self.start

  def record(self, step: int) -> None:
    if jax.process_index() != 0:
      return
    seconds = self._read()
    seconds[str(step)] = round(self.total(), 1)
    with open(self.path + ".tmp", "w") as f:
      json.dump(seconds, f)
    os.replace(self.path + ".tmp", self.path)


def save(cfg, workdir, mngr, step, state, data_iter) -> None:
  checkpoint.save(mngr, step, state_lib.checkpointed(state), data_iter, cfg)
  checkpoint.export_adapters(workdir, step, state.params, tuple(cfg.optim.frozen), cfg.train.keep_checkpoints)


def train(cfg, workdir: str) -> dict:
  """Runs the job of `cfg` in `workdir` (resuming from its last checkpoint) and returns results.

  Holds the workdir's lock throughout (one training per workdir; see workdir_lock)."""
  workdir = prepare_workdir(workdir)
  lock = workdir_lock.acquire(workdir, lead=jax.process_index() == 0)
  try:
    if "folds" in cfg:  # every fold's model in one compiled program (train/loso.py)
      from deft_jax.train import loso  # pylint: disable=import-outside-toplevel
      return loso.run(cfg, workdir)
    return _train(cfg, workdir)
  finally:
    if lock:
      lock.release()


def _train(cfg, workdir: str) -> dict:
  start = time.time()
  builder = build.prepare(cfg.data.name, selection.data_dir(cfg), cfg.data.manual_dir or None)
  tokenizer = load_tokenizer(cfg, workdir)
  train_source, test_source, test_info = selection.select_records(cfg, builder)

  mesh = sharding.make_mesh(cfg.mesh)
  rules = sharding.rules(cfg)
  per_process = check_batch(cfg, mesh)
  model = state_lib.make_model(cfg, tokenizer)
  rng = jax.random.key(cfg.seed)
  # Seeded init, the HF base, vision checkpoints, a stage-1 run; then the workdir's own checkpoint.
  state, state_shardings = init_from.initial_state(cfg, model, mesh, cfg.train.steps)

  preprocess = pipeline.Preprocess(tokenizer, cfg.data.scheme, cfg.data.max_text_len, train=True,
                                   answers=cfg.data.answers, photometric=augment.Photometric(**cfg.data.augment))
  data_iter = iter(pipeline.dataset(train_source, preprocess, per_process, seed=cfg.seed, train=True,
                                    process_index=jax.process_index(), process_count=jax.process_count()))
  mngr = checkpoint.manager(workdir, cfg.train.keep_checkpoints)
  init_from.check_base(cfg, workdir)
  state = resume(mngr, state, state_shardings, data_iter, cfg.train.steps)
  step = int(state.step)
  trim_metrics(workdir, step)
  clock = TrainClock(workdir, start)
  clock.resume(step)

  train_step = make_train_step(model, dict(cfg.loss), state_shardings, mesh, rules=rules,
                               grad_accum_steps=cfg.train.grad_accum_steps)
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
        clock.record(step)
      if stop:
        mngr.wait_until_finished()
        raise preemption.Preempted(step)
  mngr.wait_until_finished()
  train_seconds = clock.total()

  results = evaluate.evaluate(cfg, model, state_lib.all_params(state), tokenizer, test_source, test_info, mesh, workdir)
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
