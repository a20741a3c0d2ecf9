"""A small BPE tokenizer trained on deft-jax's own text, in Hugging Face format.

Real runs use the LLM checkpoint's tokenizer; this one lets a randomly initialised LLM run
anywhere without downloads. Either way it is loaded with `transformers.AutoTokenizer`.
"""

import os

import tokenizers
import transformers
from tokenizers import decoders, models, pre_tokenizers, trainers

from deft_jax.data import answers

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
# Each expert's tokens sit between its own markers (shared/DESIGN.md).
EXPERT_MARKERS = {name: (f"<{name}>", f"</{name}>") for name in ("structure", "texture", "motion")}
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK] + [m for pair in EXPERT_MARKERS.values() for m in pair]


def train_tokenizer(path: str | os.PathLike, vocab_size: int = 512) -> None:
  """Trains byte-level BPE on answers.corpus() and saves it in HF format at `path`."""
  tok = tokenizers.Tokenizer(models.BPE(unk_token=UNK))
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
  tok.train_from_iterator(answers.corpus() * 4, trainer=trainer)
  fast = transformers.PreTrainedTokenizerFast(
      tokenizer_object=tok, pad_token=PAD, bos_token=BOS, eos_token=EOS, unk_token=UNK,
      additional_special_tokens=SPECIAL_TOKENS[4:])
  fast.save_pretrained(os.fspath(path))


def load_tokenizer(path: str | os.PathLike):
  """AutoTokenizer from a local folder, with an error that names the folder."""
  path = os.fspath(path)
  if not os.path.isdir(path) or not any(
      os.path.exists(os.path.join(path, f)) for f in ("tokenizer.json", "tokenizer.model", "vocab.json")):
    raise FileNotFoundError(f"{path}: no tokenizer files (tokenizer.json, tokenizer.model or vocab.json)")
  tok = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
  missing = [m for pair in EXPERT_MARKERS.values() for m in pair if m not in tok.get_vocab()]
  if missing:
    tok.add_special_tokens({"additional_special_tokens": missing})
  if tok.pad_token is None:
    tok.pad_token = tok.eos_token
  return tok
