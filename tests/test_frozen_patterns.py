"""optim.frozen: a pattern that matches no parameter is refused, by the trainer and by the fold
program, before anything trains (a typo would otherwise train every weight it meant to freeze)."""

import re

import jax
import numpy as np
import pytest

from configs import composite_flow
from deft_jax import cli
from deft_jax.data import tokenizer as tokenizer_lib
from deft_jax.facs import catalogue
from deft_jax.train import fold_models, optimizer, sharding, state as state_lib

TYPO = r"^llm/layerz(_\d+)?/(?!.*lora_).*"  # "layerz": freezes nothing
LORA_ONLY = r"^llm/layers(_\d+)?/(?!.*lora_).*"  # the search's base: LoRA alone trains in the LLM
REFUSED = re.escape(f"optim.frozen: {TYPO!r} matches no parameter")


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
  path = tmp_path_factory.mktemp("tok") / "tokenizer"
  tokenizer_lib.train_tokenizer(path, composite_flow.get_config("tiny").data.tokenizer_vocab)
  return tokenizer_lib.load_tokenizer(path)


def test_check_frozen_names_the_idle_pattern_and_the_paths_it_searched():
  params = {"llm": {"layers_0": {"q_proj": {"kernel": 0, "lora_a": 0}}}, "motion": {"stem": {"kernel": 0}}}
  optimizer.check_frozen(params, (LORA_ONLY, r"^motion/"))
  optimizer.check_frozen(params, ())
  with pytest.raises(ValueError, match=REFUSED) as info:
    optimizer.check_frozen(params, (r"^motion/", TYPO))
  assert "'llm/layers_0/q_proj/kernel'" in str(info.value) and "3 parameters" in str(info.value)
  assert r"'^motion/'" not in str(info.value)  # the pattern that freezes something is not named
  with pytest.raises(ValueError, match=re.escape(f"{TYPO!r}, '^mot$' match no parameter")):
    optimizer.check_frozen(params, (TYPO, "^mot$"))


def test_the_trainer_refuses_a_pattern_that_matches_nothing(tokenizer):
  cfg = cli.load_config(["--config", "configs/synthetic.py:tiny", f"--config.optim.frozen=('{TYPO}',)"])
  model = state_lib.make_model(cfg, tokenizer)
  with pytest.raises(ValueError, match=REFUSED):
    state_lib.abstract_state(cfg, model, sharding.make_mesh(cfg.mesh), 10)


def _fold_spec(tokenizer, frozen):
  """The fold program's DEFT spec on the tiny composite config with these frozen patterns."""
  cfg = composite_flow.get_config("tiny")
  cfg.optim.frozen = frozen
  n, length = 2, cfg.data.max_text_len
  text = {"text_ids": np.zeros((n, length), np.int32), "text_mask": np.ones((n, length), np.int32),
          "loss_mask": np.zeros((n, length), np.float32), "prompt_len": np.full((n,), 4, np.int32)}
  sample = {"flow": np.zeros((n, 28, 28, 3), np.float32), "aus": np.zeros((n, catalogue.NUM_AUS), np.float32),
            "label": np.zeros((n,), np.int32), **text, **{f"eval_{k}": v for k, v in text.items()}}
  return fold_models.deft(cfg, tokenizer, sample)


def test_the_fold_program_refuses_it_too(tokenizer):
  with pytest.raises(ValueError, match=REFUSED):
    jax.eval_shape(_fold_spec(tokenizer, (TYPO,)).init, jax.random.key(0))


def test_the_searchs_lora_only_pattern_freezes_the_llm_layers_and_nothing_else(tokenizer):
  frozen = (LORA_ONLY,)
  params = jax.eval_shape(_fold_spec(tokenizer, frozen).init, jax.random.key(0))["params"]
  _, fixed = optimizer.split_trainable(params, frozen, sep="/")
  assert fixed and all(k.startswith("llm/layers_") and "lora_" not in k for k in fixed)
