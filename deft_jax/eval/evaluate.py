"""Held-out evaluation: classifier predictions, pooled metrics, the per-clip log, and answers."""

import csv
import os

import jax
import numpy as np
from jax.experimental import multihost_utils

from deft_jax.data import answers, pipeline
from deft_jax.eval import metrics
from deft_jax.facs import emotions
from deft_jax.models import decoding, deft
from deft_jax.train import sharding

LOG_FIELDS = ("dataset", "subject", "clip", "truth", "prediction")


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


def predict(model, params, source, preprocess, batch_size, mesh):
  """Emotion probabilities (N, C) for every record of `source`, in order."""
  apply = jax.jit(lambda p, b: jax.nn.softmax(model.apply({"params": p}, b)["emotion_logits"]))
  probs = []
  for batch, n in _padded_batches(source, preprocess, batch_size):
    out = apply(params, sharding.global_batch(_local_rows(batch), mesh))
    probs.append(np.asarray(multihost_utils.process_allgather(out, tiled=True))[:n])
  return np.concatenate(probs) if probs else np.zeros((0, model.config.num_classes))


def generate_answers(model, params, source, preprocess, tokenizer, count, max_new_tokens):
  """Greedy (C, E, R) answers for the first `count` records, decoded and parsed."""
  out = []
  for i in range(min(count, len(source))):
    example = {k: v[None] for k, v in preprocess.map_with(source[i], instruction=0).items()}
    prompt_len = int(example["prompt_len"][0])
    embeds, mask = model.apply({"params": params}, example, prompt_len, method="prompt")
    tokens = decoding.generate(deft.language_model(model), params["llm"], inputs_embeds=embeds, attention_mask=mask,
                               max_new_tokens=max_new_tokens, stop_tokens=(tokenizer.eos_token_id,),
                               pad_token_id=tokenizer.pad_token_id)
    text = tokenizer.decode(np.asarray(tokens[0]), skip_special_tokens=True)
    try:
      parsed = answers.parse_answer(text)
      parsed = {"cues": [c.text() for c in parsed.cues], "emotion": parsed.emotion, "reasoning": parsed.reasoning}
    except answers.ParseError as e:
      parsed = {"error": str(e)}
    out.append({"text": text, "parsed": parsed})
  return out


def evaluate(cfg, model, params, tokenizer, source, info, mesh, workdir: str) -> dict:
  """Scores the classifier head on `source` and writes WORKDIR/predictions.csv."""
  scheme = cfg.data.scheme
  classes = emotions.SCHEMES[scheme]
  preprocess = pipeline.Preprocess(tokenizer, scheme, cfg.data.max_text_len, train=False)
  probs = predict(model, params, source, preprocess, cfg.train.eval_batch_size, mesh)
  truth = np.array([c.label for c in info])
  pred = probs.argmax(-1)
  cm = metrics.confusion(truth, pred, len(classes))
  results = {**metrics.scores(cm), "classes": list(classes), "confusion": cm.tolist(),
             "num_test_clips": int(len(truth)), "num_test_subjects": len({c.subject for c in info})}
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "predictions.csv"), "w", newline="") as f:
      w = csv.writer(f)
      w.writerow(LOG_FIELDS + tuple(f"p_{c}" for c in classes))
      for c, p, row in zip(info, pred, probs):
        w.writerow([c.source, c.subject, c.clip_id, classes[c.label], classes[p]] + [f"{x:.4f}" for x in row])
  generated = generate_answers(model, params, source, preprocess, tokenizer, cfg.train.generate_examples,
                               cfg.train.max_new_tokens)
  results["examples"] = [{"clip_id": c.clip_id, "truth": classes[c.label], **g} for c, g in zip(info, generated)]
  return results
