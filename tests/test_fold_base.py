"""A pretrained LLM in the fold program: one frozen base that every fold reads, per-fold
parameters that hold only what trains (configs/composite_flow.py:smollm2 on the real composite).

The checkpoint is a tiny random Llama with SmolLM2's tokenizer and exactly its 49152 rows (no
spare row for the expert markers), so the grown rows and the chat template are the real ones.
"""

import dataclasses
import json
import re

import jax
import numpy as np
import optax
import pytest
from flax import traverse_util

import test_composite_builder as fake
from test_smollm2 import _tiny_full_vocab_checkpoint, smollm2_tokenizer_dir  # noqa: F401 (a fixture)
from deft_jax import cli
from deft_jax.data import build, tokenizer as tokenizer_lib
from deft_jax.train import fold_data, fold_models, folds, loso, trainer

pytestmark = pytest.mark.slow  # builds the fake composite and trains folds: a minute on 2 cores

FROZEN = r"^llm/(?!.*(lora_|added_)).*"


@pytest.fixture(scope="module")
def layout(tmp_path_factory, smollm2_tokenizer_dir):
  """(manual_dir, data_dir, llm_path): the fake composite layout, built once, and the checkpoint."""
  manual, tfds_dir = tmp_path_factory.mktemp("manual"), tmp_path_factory.mktemp("tfds")
  fake.write_layout(manual)
  build.prepare("megc2019_composite/f56", tfds_dir, manual)
  llm = _tiny_full_vocab_checkpoint(tmp_path_factory.mktemp("llm") / "hf", smollm2_tokenizer_dir, tied=True)
  return manual, tfds_dir, llm


def _config(layout, *extra):
  manual, tfds_dir, llm = layout
  return cli.load_config(["--config", "configs/composite_flow.py:tiny", f"--config.data.manual_dir={manual}",
                          f"--config.data.data_dir={tfds_dir}", "--config.data.name=megc2019_composite/f56",
                          f"--config.model.llm_path={llm}", f"--config.optim.frozen=('{FROZEN}',)",
                          "--config.model.lora.rank=4", "--config.data.max_text_len=40",
                          "--config.folds.models=('deft',)", "--config.folds.num_folds=2", *extra])


def _fold_program(cfg):
  tok = tokenizer_lib.load_tokenizer(cfg.model.llm_path)
  source = loso.source_of(cfg, build.prepare(cfg.data.name, cfg.data.data_dir, cfg.data.manual_dir))
  clips = fold_data.load(source, cfg.data.scheme, tok, cfg.data.max_text_len)
  plan = folds.plan(clips.subject, num_folds=2)
  data = {k: v for k, v in clips.arrays.items() if k != "face"}
  spec = fold_models.deft(cfg, tok, data)
  idx, _ = folds.scored_indices(plan.scored)
  weights = folds.sampling_weights(plan.train, clips.label, "sample")
  steps = folds.steps_per_epoch(plan.train, 4)
  tx = loso.optimizer(dict(learning_rate=1e-2, weight_decay=0.0), steps, 0, spec.frozen)
  return spec, tx, data, weights, idx, folds.Schedule(4, steps, 1)


def test_folds_share_one_frozen_base_and_train_like_per_fold_copies(layout):
  """Sharing the base changes what each fold holds, not what it computes: the same folds trained
  with a frozen copy of the checkpoint inside every fold's params give the same logits."""
  spec, tx, data, weights, idx, schedule = _fold_program(_config(layout))
  base = traverse_util.flatten_dict(spec.base)
  assert any(k[-1] == "embedding" for k in base) and all(k[0] == "llm" and "lora_a" not in k for k in base)
  assert set(spec.start) == {("llm", "embed_tokens", "added_embedding")}  # the grown rows, at the mean row
  table = base[("llm", "embed_tokens", "embedding")]
  np.testing.assert_allclose(spec.start[("llm", "embed_tokens", "added_embedding")],
                             np.repeat(np.asarray(table).mean(0, keepdims=True), 6, 0), rtol=1e-6, atol=1e-7)

  keys = jax.random.split(jax.random.key(0), 2)
  variables, opt_state = jax.eval_shape(folds.init_folds(spec, tx), keys, spec.start)
  held = traverse_util.flatten_dict(variables["params"])
  assert not set(held) & set(base) and ("llm", "embed_tokens", "added_embedding") in held
  assert any("lora_a" in k for k in held) and any(k[0] == "motion" for k in held)
  trained = sum(x.size for x in held.values())
  assert 2 * trained <= sum(x.size for x in jax.tree.leaves(opt_state)) <= 2 * trained + 64  # Adam's 2 moments
  assert trained < sum(np.size(x) for x in base.values())  # both folds' trainable part, against one base

  shared, shared_loss = folds.train_folds(spec, tx, data, weights, idx, schedule, folds.Augment(), seed=3)
  copies = dataclasses.replace(spec, base=None, start={**base, **spec.start})  # every fold its own frozen copy
  alone, alone_loss = folds.train_folds(copies, tx, data, weights, idx, schedule, folds.Augment(), seed=3)
  assert np.isfinite(shared_loss).all() and np.isfinite(shared).all()
  np.testing.assert_allclose(shared_loss, alone_loss, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(shared, alone, rtol=1e-4, atol=1e-4)


def test_composite_job_with_a_full_vocabulary_checkpoint(layout, tmp_path):
  """The LOSO job on a checkpoint with no spare row: markers grow the table, prompts take the
  chat template, and every fold scores finite probabilities."""
  work = tmp_path / "work"
  manual, tfds_dir, llm = layout
  assert cli.main(["train", "--config", "configs/composite_flow.py:tiny", "--workdir", str(work),
                   f"--config.data.manual_dir={manual}", f"--config.data.data_dir={tfds_dir}",
                   "--config.data.name=megc2019_composite/f56", f"--config.model.llm_path={llm}",
                   f"--config.optim.frozen=('{FROZEN}',)", "--config.data.max_text_len=40",
                   "--config.folds.models=('deft',)", "--config.folds.epochs=1"]) == 0
  results = json.loads((work / "results.json").read_text())
  assert results["num_test_clips"] == len(fake.ROWS) and 0.0 <= results["uf1"] <= 1.0
  assert results["llm_base"]["llm_path"] == str(llm) and len(results["llm_base"]["llm_sha256"]) == 64
  losses = [json.loads(line)["loss"] for line in (work / "metrics.jsonl").read_text().splitlines()]
  assert losses and np.isfinite(losses).all()
  probs = np.load(work / "epochs.npz")["probs"].astype(np.float32)
  assert np.isfinite(probs).all()


def test_smollm2_variant_freezes_the_base_but_lora_and_grown_rows(monkeypatch, tmp_path):
  monkeypatch.setenv("DEFT_SMOLLM2", str(tmp_path / "smollm2"))
  cfg = cli.load_config(["--config", "configs/composite_flow.py:smollm2"])
  assert cfg.model.llm_path == str(tmp_path / "smollm2") and cfg.model.scan_layers
  frozen = lambda path: any(re.search(p, path) for p in cfg.optim.frozen)
  assert frozen("llm/layers/attn/q_proj/kernel") and frozen("llm/embed_tokens/embedding")
  assert not frozen("llm/layers/attn/q_proj/lora_a") and not frozen("llm/embed_tokens/added_embedding")
  assert not frozen("motion/stem/conv0/kernel")
  default = cli.load_config(["--config", "configs/composite_flow.py"])
  assert cfg.folds.epochs == default.folds.epochs and cfg.folds.num_folds == default.folds.num_folds == 0


def test_flow_like_the_distributed_composite():
  """Another corpus's flow in the composite's form: resized, each clip's u, v min-max to [-1, 1]
  and strain to [0, 1] (what STSTNet's per-clip 0..255 PNGs hold, as megc2019_composite reads them)."""
  rng = np.random.default_rng(5)
  flow = rng.normal(size=(3, 8, 8, 3)).astype(np.float32) * np.array([2.0, 0.5, 0.1], np.float32)
  out = fold_data.like_composite(flow, 8)
  low, high = flow.min((1, 2), keepdims=True), flow.max((1, 2), keepdims=True)
  unit = (flow - low) / (high - low)
  np.testing.assert_allclose(out[..., :2], 2 * unit[..., :2] - 1, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out[..., 2], unit[..., 2], rtol=1e-5, atol=1e-6)
  small = fold_data.like_composite(flow, 4)
  assert small.shape == (3, 4, 4, 3)
  np.testing.assert_allclose(small.min((1, 2)), [[-1, -1, 0]] * 3, atol=1e-6)
  np.testing.assert_allclose(small.max((1, 2)), [[1, 1, 1]] * 3, atol=1e-6)


def test_every_fold_starts_from_the_model_pretrained_on_another_corpus(layout, tmp_path):
  """folds.pretrain: one model trained on synthetic_me's clips (flow in the composite's form);
  its params are where every fold starts."""
  manual, tfds_dir, _ = layout
  cfg = cli.load_config(["--config", "configs/composite_flow.py:tiny", f"--config.data.manual_dir={manual}",
                         f"--config.data.data_dir={tfds_dir}", "--config.data.name=megc2019_composite/f56",
                         "--config.folds.pretrain.data=synthetic_me/tiny", "--config.folds.pretrain.epochs=1"])
  tok = trainer.load_tokenizer(cfg, str(tmp_path))
  source = loso.source_of(cfg, build.prepare(cfg.data.name, cfg.data.data_dir, cfg.data.manual_dir))
  clips = fold_data.load(source, cfg.data.scheme, tok, cfg.data.max_text_len)
  corpus = build.prepare("synthetic_me/tiny", tfds_dir)
  other = fold_data.load(corpus.as_data_source(split="train+test"), cfg.data.scheme, tok, cfg.data.max_text_len,
                         composite_size=28)
  assert other.arrays["flow"].shape[1:] == (28, 28, 3) and other.arrays["flow"].max() == pytest.approx(1.0)
  data = {k: v for k, v in clips.arrays.items() if k != "face"}
  spec = fold_models.deft(cfg, tok, data)
  settings = loso.model_settings(cfg, "deft")
  lines = []
  start = loso.pretrained(cfg, spec, other, data, settings, folds.fold_mesh(), lines.append)
  assert [line.split(":")[0] for line in lines] == ["pretrain on synthetic_me/tiny"]
  init = traverse_util.flatten_dict(spec.init(jax.random.key(0))["params"])
  assert set(start) == set(init) and not np.allclose(start[("emotion_head", "kernel")],
                                                     init[("emotion_head", "kernel")])
  variables, _ = jax.jit(folds.init_folds(dataclasses.replace(spec, start=start), optax.adam(1e-3)))(
      jax.random.split(jax.random.key(1), 3), start)
  for path, value in traverse_util.flatten_dict(variables["params"]).items():
    np.testing.assert_array_equal(value, np.broadcast_to(start[path], value.shape), err_msg="/".join(path))
