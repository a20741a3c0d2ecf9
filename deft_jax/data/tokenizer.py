"""A small BPE tokenizer trained on deft-jax's own text, in Hugging Face format.

Real runs use the LLM checkpoint's tokenizer; this one lets a randomly initialised LLM run
anywhere without downloads. Either way it is loaded with `load_tokenizer` (the one loader).

The prompt's layout follows the tokenizer: with a chat template (an instruct model's, e.g.
SmolLM2's ChatML) the expert tokens and the instruction form the user turn after a system turn
and the answer is the assistant's turn; without one it is BOS, experts, instruction, newline.
"""

import dataclasses
import os

import tokenizers
import transformers
from tokenizers import decoders, models, pre_tokenizers, trainers

from deft_jax.data import answers

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
# Each expert's tokens sit between its own markers (models/deft.py).
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


SYSTEM_PROMPT = "You are an expert in facial micro-expressions. Describe the facial motion you see, then name the emotion."
_USER_SLOT = "\x00USER\x00"  # stands for the user's content while the template is rendered


@dataclasses.dataclass(frozen=True)
class PromptLayout:
  """head_ids: tokens before the expert tokens (BOS, or the system turn and the user turn's
  opening); tail: text after the instruction, before the answer (its last token is the one
  the emotion head reads). The answer ends with the tokenizer's EOS (ChatML's <|im_end|>)."""

  head_ids: tuple[int, ...]
  tail: str
  chat: bool


def prompt_layout(tokenizer) -> PromptLayout:
  """The chat template's turns around the user's content when the tokenizer has one, else plain."""
  template = getattr(tokenizer, "chat_template", None)
  if not template:
    return PromptLayout((tokenizer.bos_token_id,), "\n", chat=False)
  cached = getattr(tokenizer, "_deft_prompt_layout", None)
  if cached is not None:
    return cached
  messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": _USER_SLOT}]
  text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
  if text.count(_USER_SLOT) != 1:
    raise ValueError(f"the tokenizer's chat template does not place the user's message once: {text!r}")
  head, tail = text.split(_USER_SLOT)
  layout = PromptLayout(tuple(tokenizer(head, add_special_tokens=False)["input_ids"]), tail, chat=True)
  tokenizer._deft_prompt_layout = layout  # pylint: disable=protected-access
  return layout
