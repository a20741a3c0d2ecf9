"""Held-out evaluation: classifier predictions, pooled metrics, the per-clip log, and answers."""

import functools
import json
import os

import jax
import numpy as np
from jax.experimental import multihost_utils

from deft_jax.data import pipeline
from deft_jax.eval import answer_scores, experts, log as log_lib, metrics
from deft_jax.facs import catalogue, emotions
from deft_jax.models import decoding, deft
from deft_jax.train import sharding

# Generated answers copied into results.json (all of them go to answers.jsonl).
NUM_EXAMPLES = 3


def _padded_batches(source, preprocess, batch_size):
  """Fixed-size batches (the last padded by repeating rows) and each one's real row count."""
  for batch in pipeline.dataset(source, preprocess, batch_size, seed=0, train=False):
    n = len(batch["label"])
    if n < batch_size:
      batch = {k: np.concatenate([v, np.repeat(v[-1:], batch_size - n, 0)]) for k, v in batch.items()}
    yield batch, n


def _local_rows(batch):
  """This process's share of a batch that every process holds whole."""
  pi, pc = jax.process_index(), jax.process_count()
  n = len(batch["label"]) // pc
  return {k: v[pi * n:(pi + 1) * n] for k, v in batch.items()}


@functools.partial(jax.jit, static_argnames=("model", "drop"))
def probabilities(model, params, batch, drop: tuple[str, ...] = ()):
  """Emotion probabilities of a batch, with the experts named in `drop` left out."""
  return jax.nn.softmax(model.apply({"params": params}, batch, drop=drop)["emotion_logits"])


@functools.partial(jax.jit, static_argnames=("model", "prompt_len"))
def prompt(model, params, batch, prompt_len: int):
  """Embeddings and mask of prefix + instruction, to generate from."""
  return model.apply({"params": params}, batch, prompt_len, method="prompt")


def predict(model, params, source, preprocess, batch_size, mesh, drop: tuple[str, ...] = ()):
  """Emotion probabilities (N, C) for every record of `source`, in order, without experts `drop`."""
  probs = []
  for batch, n in _padded_batches(source, preprocess, batch_size):
    out = probabilities(model, params, sharding.global_batch(_local_rows(batch), mesh), drop)
    probs.append(np.asarray(multihost_utils.process_allgather(out, tiled=True))[:n])
  return np.concatenate(probs) if probs else np.zeros((0, model.config.num_classes))


def without_each_expert(model, params, source, preprocess, batch_size, mesh) -> dict[str, np.ndarray]:
  """Probabilities (N, C) with each expert in turn left out of the prefix (see experts.py)."""
  return {name: predict(model, params, source, preprocess, batch_size, mesh, drop=(name,))
          for name in model.config.experts}


def generate_texts(model, params, source, preprocess, tokenizer, max_new_tokens: int, batch_size: int):
  """Greedy answers to the first instruction for every record of `source`, decoded."""
  texts = []
  for batch, n in _padded_batches(source, preprocess, batch_size):
    lengths = set(batch["prompt_len"].tolist())
    if len(lengths) > 1:  # the same instruction for every record gives one length
      raise ValueError(f"prompts of different lengths {sorted(lengths)} in one batch")
    embeds, mask = prompt(model, params, batch, lengths.pop())
    tokens = decoding.generate(deft.language_model(model), params["llm"], inputs_embeds=embeds, attention_mask=mask,
                               max_new_tokens=max_new_tokens, stop_tokens=(tokenizer.eos_token_id,),
                               pad_token_id=tokenizer.pad_token_id)
    texts += tokenizer.batch_decode(np.asarray(tokens)[:n], skip_special_tokens=True)
  return texts


def evaluate_answers(cfg, model, params, tokenizer, source, info, head_pred, preprocess, workdir):
  """Generates answers for the first train.generate_examples clips (-1: all) and scores them.

  Writes every answer to WORKDIR/answers.jsonl; returns the scores and the first few answers.
  """
  classes = emotions.SCHEMES[cfg.data.scheme]
  count = len(source) if cfg.train.generate_examples < 0 else min(cfg.train.generate_examples, len(source))
  subset = pipeline.Subset(source, range(count))
  texts = generate_texts(model, params, subset, preprocess, tokenizer, cfg.train.max_new_tokens,
                         cfg.train.eval_batch_size)
  labelled = [{catalogue.AU_NUMBERS[j] for j in np.flatnonzero(subset[i]["aus"])} for i in range(count)]
  parsed = [answer_scores.parse(t) for t in texts]
  records = [{"dataset": c.source, "subject": c.subject, "clip_id": c.clip_id, "truth": classes[c.label],
              "head": classes[h], "labelled_aus": sorted(a), "text": t, "parsed": p}
             for c, h, a, t, p in zip(info, head_pred, labelled, texts, parsed)]
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "answers.jsonl"), "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in records)
  scored = answer_scores.score(parsed, [c.label for c in info[:count]], head_pred[:count], labelled, classes)
  return scored, records[:NUM_EXAMPLES]


def evaluate(cfg, model, params, tokenizer, source, info, mesh, workdir: str) -> dict:
  """Scores the classifier head on `source`, writes WORKDIR/predictions.csv, measures what each
  expert contributes (train.expert_contributions), and (when train.generate_examples is not 0)
  generates, scores and writes answers."""
  scheme = cfg.data.scheme
  classes = emotions.SCHEMES[scheme]
  preprocess = pipeline.Preprocess(tokenizer, scheme, cfg.data.max_text_len, train=False)
  probs = predict(model, params, source, preprocess, cfg.train.eval_batch_size, mesh)
  truth = np.array([c.label for c in info])
  pred = probs.argmax(-1)
  datasets = [c.source for c in info]
  scored = metrics.pooled(truth, pred, len(classes), datasets)
  full = {k: v for k, v in scored["full"].items() if k != "num_clips"}
  results = {**full, "per_dataset": scored["per_dataset"], "scheme": scheme, "classes": list(classes),
             "num_test_clips": int(len(truth)), "num_test_subjects": len({c.subject for c in info})}
  if jax.process_index() == 0:
    log_lib.write(os.path.join(workdir, "predictions.csv"), classes, datasets, [c.subject for c in info],
                  [c.clip_id for c in info], truth, pred, probs)
  if cfg.train.expert_contributions:
    without = without_each_expert(model, params, source, preprocess, cfg.train.eval_batch_size, mesh)
    results["experts"] = experts.summarize(probs, without, truth, classes)
  if cfg.train.generate_examples:
    results["answers"], results["examples"] = evaluate_answers(cfg, model, params, tokenizer, source, info, pred,
                                                               preprocess, workdir)
  return results
