"""grain pipelines from TFDS array_record sources to model batches.

A record becomes: keyframes (onset, apex), the clip, the onset->apex motion (u, v, strain in
pixels: absolute magnitude is kept on purpose, unlike the per-sample min-max of STSTNet),
AU targets, the class label, and the text (instruction + (C, E, R) answer) with its masks.

Where the text comes from is config.data.answers:
  "labels":  the written AU labels, as they are (any clip dataset);
  "uni_mer": the instruction / answer pairs of a uni_mer/* record (flow-confirmed cues), one
             drawn per step in training and the first (INSTRUCTIONS[0]) in evaluation; the
             AU targets are then the confirmed AUs.
"""

import dataclasses
import functools

import grain
import numpy as np

from deft_jax.data import answers, augment, schema, tokenizer as tokenizer_lib
from deft_jax.facs import catalogue, emotions, regions


class Subset(grain.sources.RandomAccessDataSource):
  """A view of chosen records of a data source (a LOSO fold, one split's subjects)."""

  def __init__(self, source, indices):
    self._source, self._indices = source, np.asarray(indices, np.int64)

  def __len__(self):
    return len(self._indices)

  def __getitem__(self, i):
    return self._source[int(self._indices[i])]

  def __repr__(self):
    return f"Subset({len(self)} of {len(self._source)})"


@dataclasses.dataclass(frozen=True)
class ClipInfo:
  index: int
  subject: str
  clip_id: str
  source: str
  label: int


def index_source(source, scheme: str) -> list[ClipInfo]:
  """Subject, id and label of every record, to choose folds without loading clips twice."""
  out = []
  for i in range(len(source)):
    r = source[i]
    out.append(ClipInfo(i, as_text(r["subject"]), as_text(r["clip_id"]), as_text(r["source"]),
                        record_label(r, scheme)))
  return out


def region_boxes(landmarks) -> np.ndarray:
  """(R, 4) canonical boxes of catalogue.REGIONS placed by a record's 68 landmarks (the
  canonical boxes for records without them)."""
  boxes = regions.region_boxes(None if landmarks is None else np.asarray(landmarks, np.float32))
  return np.array([boxes[r] for r in catalogue.REGIONS], np.float32)


def record_label(record, scheme: str) -> int:
  """A record's class in `scheme` (-1: none): records store the fine emotion only, and every
  class scheme applies here, when the data is read."""
  return emotions.label(as_text(record["emotion"]), scheme)


def as_text(x) -> str:
  """A TFDS text field (bytes) or a plain string, as str."""
  return x.decode() if isinstance(x, bytes) else str(x)


@dataclasses.dataclass(frozen=True)
class TextLayout:
  max_len: int
  pad_id: int
  eos_id: int
  tail: str = "\n"  # after the instruction: tokenizer.prompt_layout's (the chat turn's end)


def text_layout(tokenizer, max_len: int) -> TextLayout:
  return TextLayout(max_len, tokenizer.pad_token_id, tokenizer.eos_token_id,
                    tokenizer_lib.prompt_layout(tokenizer).tail)


ANSWER_SOURCES = ("labels", "uni_mer")


class Preprocess(grain.transforms.RandomMap):
  """One record -> one example of fixed shapes (numpy only, so it runs in grain workers)."""

  def __init__(self, tokenizer, scheme: str, max_text_len: int, train: bool, answers: str = "labels",
               photometric: augment.Photometric = augment.Photometric()):
    if answers not in ANSWER_SOURCES:
      raise ValueError(f"data.answers must be one of {ANSWER_SOURCES}, got {answers!r}")
    self.tokenizer, self.scheme, self.train, self.answers = tokenizer, scheme, train, answers
    self.photometric = photometric
    self.layout = text_layout(tokenizer, max_text_len)

  def random_map(self, record, rng: np.random.Generator):
    if not self.train:
      return self.map_with(record, 0)
    choices = len(answers.INSTRUCTIONS) if self.answers == "labels" else len(_uni_mer_field(record, "instructions"))
    instruction = int(rng.integers(choices))
    return self.map_with({**record, "frames": self.photometric(record["frames"], rng)}, instruction)

  def map_with(self, record, instruction: int):
    """`instruction` indexes answers.INSTRUCTIONS ("labels") or the record's pairs ("uni_mer")."""
    emotion = as_text(record["emotion"])
    label = record_label(record, self.scheme)
    name = emotions.SCHEMES[self.scheme][label]
    if self.answers == "labels":
      answer = answers.answer_from_labels(record["aus"], record["au_side"], emotion, self.scheme)
      answer = dataclasses.replace(answer, emotion=name)
      prompt, aus = answers.INSTRUCTIONS[instruction], record["aus"]
    else:
      prompt = as_text(_uni_mer_field(record, "instructions")[instruction])
      answer = answers.relabel(answers.parse_answer(as_text(record["answers"][instruction])), emotion, name)
      aus = record["aus_confirmed"]
    text = encode_text(self.tokenizer, self.layout, prompt, answers.format_answer(answer))
    frames = record["frames"]
    flow = np.concatenate([record["flow"], record["strain"][..., None]], -1).astype(np.float32)
    return schema.conform({
        "keyframes": np.stack([frames[record["onset_index"]], frames[record["apex_index"]]]),
        "clip": frames,
        "flow": flow,
        "aus": aus,
        "label": label,
        "region_boxes": region_boxes(record.get("landmarks")),
        **text,
    }, where=as_text(record.get("clip_id", "record")))


def _uni_mer_field(record, field: str):
  if field not in record:
    raise KeyError(f"data.answers='uni_mer' reads the {field!r} of uni_mer/* records; this record "
                   f"({as_text(record.get('clip_id', '?'))}) has none: set data.name to a uni_mer dataset")
  return record[field]


def encode_text(tokenizer, layout: TextLayout, instruction: str, answer: str | None) -> dict:
  """Instruction and the layout's tail, then the answer, right-padded; the loss covers the answer
  and its EOS only."""
  prompt = tokenizer(instruction + layout.tail, add_special_tokens=False)["input_ids"]
  reply = tokenizer(answer, add_special_tokens=False)["input_ids"] + [layout.eos_id] if answer else []
  ids = (prompt + reply)[: layout.max_len]
  if len(prompt) >= layout.max_len:
    raise ValueError(f"instruction of {len(prompt)} tokens does not fit data.max_text_len={layout.max_len}")
  n = len(ids)
  text_ids = np.full(layout.max_len, layout.pad_id, np.int32)
  text_ids[:n] = ids
  loss_mask = np.zeros(layout.max_len, np.float32)
  loss_mask[len(prompt):n] = 1.0
  return {
      "text_ids": text_ids,
      "text_mask": (np.arange(layout.max_len) < n).astype(np.int32),
      "loss_mask": loss_mask,
      "prompt_len": np.int32(len(prompt)),
  }


def dataset(source, preprocess: Preprocess, batch_size: int, *, seed: int, train: bool,
            process_index: int = 0, process_count: int = 1):
  """Shuffled, repeated batches for training; one ordered pass for evaluation.

  Each process reads its own slice of the records (multi-host data loading), so the global
  batch is batch_size * process_count.
  """
  ds = grain.MapDataset.source(source)
  if train:
    ds = ds.seed(seed).shuffle().repeat()
  ds = ds.random_map(preprocess) if train else ds.map(functools.partial(preprocess.map_with, instruction=0))
  # Sliced after the random map (lazy, so each process still reads only its records): a
  # record's random draw then depends on its global position, not on the process count.
  ds = ds[process_index::process_count]
  # Reading and preprocessing run in threads ahead of the train step.
  return ds.batch(batch_size, drop_remainder=train).to_iter_dataset(
      grain.ReadOptions(num_threads=2, prefetch_buffer_size=4))
