"""The (C, E, R) answer format and the project tokenizer."""

import numpy as np
import pytest
import transformers

from deft_jax.data import answers, features, tokenizer
from deft_jax.facs import catalogue, emotions


def _random_answer(rng):
  aus = np.zeros(catalogue.NUM_AUS, np.uint8)
  aus[rng.choice(catalogue.NUM_AUS, int(rng.integers(0, 4)), replace=False)] = 1
  side = np.where(aus, rng.choice([features.SIDE_BOTH, features.SIDE_LEFT, features.SIDE_RIGHT], aus.shape), 0)
  fine = rng.choice(list(emotions.PROTOTYPES))
  return answers.answer_from_labels(aus, side.astype(np.uint8), fine, rng.choice(list(emotions.SCHEMES)))


def test_format_and_parse_are_inverse():
  rng = np.random.default_rng(1)
  for _ in range(50):
    a = _random_answer(rng)
    assert answers.parse_answer(answers.format_answer(a)) == a


@pytest.mark.parametrize("text", [
    "Emotion: happy",
    "Cues: mouth lips part (AU99 nothing)\nEmotion: x\nReasoning: y",
    "Cues: forehead moves\nEmotion: x\nReasoning: y",
    "Cues: mouth lip corners pull up (AU12 dimpler)\nEmotion: x\nReasoning: y",
])
def test_malformed_answers_raise(text):
  with pytest.raises(answers.ParseError):
    answers.parse_answer(text)


def test_tokenizer_round_trips_through_autotokenizer(tmp_path):
  tokenizer.train_tokenizer(tmp_path / "tok", vocab_size=1024)
  tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "tok", local_files_only=True)
  rng = np.random.default_rng(2)
  text = answers.format_answer(_random_answer(rng))
  ids = tok(text, add_special_tokens=False)["input_ids"]
  assert tok.decode(ids) == text
  assert tok.unk_token_id not in ids
  for open_, close in tokenizer.EXPERT_MARKERS.values():
    assert tok.convert_tokens_to_ids(open_) != tok.unk_token_id
    assert len(tok(open_, add_special_tokens=False)["input_ids"]) == 1


def test_missing_tokenizer_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match=str(tmp_path)):
    tokenizer.load_tokenizer(tmp_path)
