"""The training job: data -> sharded jit train step -> checkpoints -> held-out evaluation."""

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import tensorboardX
import tqdm
from flax import traverse_util

from deft_jax.data import build, pipeline, tokenizer as tokenizer_lib
from deft_jax.eval import evaluate
from deft_jax.models import hf
from deft_jax.train import checkpoint, losses, sharding, state as state_lib


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
  """The configured tokenizer, or one trained on deft-jax's own text into the workdir."""
  path = cfg.data.tokenizer or (cfg.model.llm_path if cfg.model.llm_path else os.path.join(workdir, "tokenizer"))
  if not cfg.data.tokenizer and not cfg.model.llm_path and not os.path.isdir(path):
    tokenizer_lib.train_tokenizer(path, cfg.data.tokenizer_vocab)
  return tokenizer_lib.load_tokenizer(path)


def make_train_step(model, weights, state_shardings, mesh):
  batch_sharding = sharding.batch_sharding(mesh)

  def step(state, batch, rng):
    def loss_fn(params):
      out = model.apply({"params": params}, batch, deterministic=False, rngs={"dropout": rng})
      total, terms = losses.hybrid_loss(out, batch, weights)
      return total, terms

    (total, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads)
    return state, {"loss": total, **terms, "grad_norm": _global_norm(grads)}

  return jax.jit(step, in_shardings=(state_shardings, batch_sharding, None),
                 out_shardings=(state_shardings, None), donate_argnums=(0,))


def _global_norm(tree):
  return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(tree)))


def load_pretrained_llm(cfg, state, mesh):
  """Puts a local HF checkpoint's weights into the LLM part of the params (LoRA stays fresh)."""
  _, loaded = hf.from_pretrained(cfg.model.llm_path, param_dtype=state_lib.dtype(cfg.model.param_dtype),
                                 mesh=mesh, rules=sharding.rules(cfg))
  flat = traverse_util.flatten_dict(state.params)
  for path, value in traverse_util.flatten_dict(loaded).items():
    flat[("llm",) + path] = value
  return state.replace(params=traverse_util.unflatten_dict(flat))


def train(cfg, workdir: str) -> dict:
  """Runs the job of `cfg` in `workdir` (resuming from its last checkpoint) and returns results."""
  workdir = prepare_workdir(workdir)
  start = time.time()
  builder = build.prepare(cfg.data.name, data_dir(cfg), cfg.data.manual_dir or None)
  tokenizer = load_tokenizer(cfg, workdir)
  sources = builder.as_data_source()
  for split in (cfg.data.train_split, cfg.data.test_split):
    if split not in sources:
      raise build.DatasetError(f"{cfg.data.name}: no split {split!r}; it has {sorted(sources)}")
  scheme = cfg.data.scheme
  train_info = [c for c in pipeline.index_source(sources[cfg.data.train_split], scheme) if c.label >= 0]
  test_info = [c for c in pipeline.index_source(sources[cfg.data.test_split], scheme) if c.label >= 0]
  train_source = pipeline.Subset(sources[cfg.data.train_split], [c.index for c in train_info])

  mesh = sharding.make_mesh(cfg.mesh)
  model = state_lib.make_model(cfg, tokenizer)
  rng = jax.random.key(cfg.seed)
  state, state_shardings = state_lib.create_state(cfg, model, mesh, cfg.train.steps, rng)
  if cfg.model.llm_path:
    state = load_pretrained_llm(cfg, state, mesh)

  per_process = cfg.train.batch_size // jax.process_count()
  preprocess = pipeline.Preprocess(tokenizer, scheme, cfg.data.max_text_len, train=True)
  data_iter = iter(pipeline.dataset(train_source, preprocess, per_process, seed=cfg.seed, train=True,
                                    process_index=jax.process_index(), process_count=jax.process_count()))
  mngr = checkpoint.manager(workdir, cfg.train.keep_checkpoints)
  if mngr.latest_step() is not None:
    abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, state_shardings)
    state = checkpoint.restore(mngr, mngr.latest_step(), abstract, data_iter)

  train_step = make_train_step(model, dict(cfg.loss), state_shardings, mesh)
  writer = tensorboardX.SummaryWriter(os.path.join(workdir, "tensorboard")) if jax.process_index() == 0 else None
  step = int(state.step)
  with open(os.path.join(workdir, "metrics.jsonl"), "a") as log, \
      tqdm.tqdm(total=cfg.train.steps, initial=step, desc="train", disable=jax.process_index() != 0) as bar:
    while step < cfg.train.steps:
      batch = sharding.global_batch(next(data_iter), mesh)
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
      if step % cfg.train.checkpoint_every == 0 or step == cfg.train.steps:
        checkpoint.save(mngr, step, state, data_iter, cfg)
  mngr.wait_until_finished()
  train_seconds = time.time() - start

  test_source = pipeline.Subset(sources[cfg.data.test_split], [c.index for c in test_info])
  results = evaluate.evaluate(cfg, model, state.params, tokenizer, test_source, test_info, mesh, workdir)
  results["train_seconds"] = round(train_seconds, 1)
  results["steps"] = step
  if writer:
    for k in ("uf1", "uar", "accuracy"):
      writer.add_scalar(f"test/{k}", results[k], step)
    writer.close()
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump(results, f, indent=2)
  return results
