"""Every labelled clip of a dataset in memory, as the arrays the fold program gathers from.

The composite is small (442 clips), so the fold program keeps the whole dataset on device and
each fold draws its batches by index: no input pipeline between steps. The answer text is the
record's own (`answer`, e.g. megc2019_composite's flow-only answers) or, for datasets without
one, written from its AU labels. Evaluation text is the instruction alone (no answer tokens).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from deft_jax.data import answers, face_geometry, pipeline
from deft_jax.facs import emotions


@dataclasses.dataclass(frozen=True)
class Clips:
  """N clips: `arrays` maps a batch field to an (N, ...) array; names for logs and folds."""
  arrays: dict
  subject: tuple[str, ...]
  clip: tuple[str, ...]
  dataset: tuple[str, ...]

  @property
  def label(self) -> np.ndarray:
    return self.arrays["label"]

  def __len__(self):
    return len(self.subject)



def join(clips: Clips, more: Clips, where: str = "the other corpus") -> Clips:
  """`clips` then `more`, field by field; every field must be in both, alike beyond the clip axis,
  and no clip of `more` may be one of `clips` (another build of the same corpus would train the
  folds on the clips they score)."""
  shared = sorted(set(zip(clips.dataset, clips.clip)) & set(zip(more.dataset, more.clip)))
  if shared:
    raise ValueError(f"{where}: {len(shared)} of its clips are clips under test, e.g. {'/'.join(shared[0])}")
  if set(clips.arrays) != set(more.arrays):
    raise ValueError(f"{where}: its clips have fields {sorted(more.arrays)}; expected {sorted(clips.arrays)}")
  for key, array in clips.arrays.items():
    if array.shape[1:] != more.arrays[key].shape[1:]:
      raise ValueError(f"{where}: field {key!r} has shape {more.arrays[key].shape[1:]} per clip; "
                       f"expected {array.shape[1:]}")
  arrays = {k: np.concatenate([v, more.arrays[k].astype(v.dtype)]) for k, v in clips.arrays.items()}
  return Clips(arrays, clips.subject + more.subject, clips.clip + more.clip, clips.dataset + more.dataset)


def _answer(record, scheme: str) -> str:
  label = emotions.SCHEMES[scheme][pipeline.record_label(record, scheme)]
  if "answer" in record:
    return pipeline.as_text(record["answer"])
  emotion = pipeline.as_text(record["emotion"])
  a = answers.answer_from_labels(record["aus"], record["au_side"], emotion, scheme)
  return answers.format_answer(dataclasses.replace(a, emotion=label))


def centred(flow: np.ndarray) -> np.ndarray:
  """u and v less their per-clip median, so that the still face reads 0 again.

  Per-clip min-max flow (the composite's) puts zero motion wherever the clip's extremes leave it:
  on the composite the median of u over a clip is -0.01 +- 0.30 across clips, of v 0.07 +- 0.46,
  against a spread of 0.27-0.28 within a clip. Most of a face does not move, so its median is the
  still skin. Strain (>= 0, 0 where still) is left as it is."""
  out = flow.copy()
  out[..., :2] -= np.median(flow[..., :2], axis=(1, 2), keepdims=True)
  return out


def like_composite(flow: np.ndarray, size: int) -> np.ndarray:
  """Flow in the distributed composite's form: resized to `size` px, then each clip's u, v
  min-max mapped to [-1, 1] and its strain to [0, 1] (STSTNet's per-clip 0..255 PNGs, as
  megc2019_composite reads them), so another corpus can be trained on beside it."""
  if flow.shape[1] != size:
    flow = np.asarray(jax.image.resize(jnp.asarray(flow), (len(flow), size, size, flow.shape[-1]), "linear",
                                       antialias=True))
  low, high = flow.min(axis=(1, 2), keepdims=True), flow.max(axis=(1, 2), keepdims=True)
  unit = (flow - low) / np.maximum(high - low, 1e-12)
  return np.concatenate([2 * unit[..., :2] - 1, unit[..., 2:]], -1).astype(np.float32)


# How a prompt names a clip's corpus (the `source` field); other sources are named as stored.
CORPUS_NAMES = {"casme2": "CASME II", "samm": "SAMM", "smic": "SMIC-HS"}


def instruction(source: str, name_corpus: bool) -> str:
  """The evaluation instruction, after the clip's corpus when `name_corpus`: corpora differ in
  frame rate, lighting and class shares, and the corpus is known at test time."""
  if not name_corpus:
    return answers.INSTRUCTIONS[0]
  return f"{CORPUS_NAMES.get(source, source)} clip. {answers.INSTRUCTIONS[0]}"


def load(source, scheme: str, tokenizer=None, max_text_len: int = 0, face_size: int = 0,
         geometry: str = "canonical", centre_flow: bool = False, name_corpus: bool = False,
         composite_size: int = 0) -> Clips:
  """The labelled clips of `source` (a TFDS data source): flow (N, S, S, 3) = (u, v, strain),
  face (N, face_size, face_size, 3) uint8 (the apex frame; 0: as stored), labels and, with a
  tokenizer, the training text (instruction + answer) and the evaluation text (instruction).
  `geometry` (data/face_geometry.py) places the regions by each clip's landmarks, or aligns the
  flow and face by them; then `region_boxes` (N, R, 4) is one of the arrays. `centre_flow`
  moves each clip's still skin to zero motion (centred()); `name_corpus` starts each prompt
  with the clip's corpus (instruction()); `composite_size` puts the flow in the composite's form
  at that size (like_composite())."""
  records = [source[i] for i in range(len(source))]
  records = [r for r in records if pipeline.record_label(r, scheme) >= 0]
  if not records:
    raise ValueError(f"no clip has a class of scheme {scheme!r}")
  flow = np.stack([np.concatenate([r["flow"], r["strain"][..., None]], -1) for r in records]).astype(np.float32)
  face = np.stack([r["frames"][int(r["apex_index"])] for r in records])
  if face_size and face.shape[1] != face_size:
    face = np.asarray(jax.image.resize(jnp.asarray(face, jnp.float32), (len(face), face_size, face_size, 3),
                                       "linear", antialias=True).round().clip(0, 255), np.uint8)
  if composite_size:
    flow = like_composite(flow, composite_size)
  if centre_flow:
    flow = centred(flow)
  names = [pipeline.as_text(r["clip_id"]) for r in records]
  flow, face, boxes = face_geometry.apply(geometry, flow, face, np.stack([r["landmarks"] for r in records]), names)
  arrays = {"flow": flow, "face": face, "label": np.array([pipeline.record_label(r, scheme) for r in records], np.int32),
            "aus": np.stack([r["aus"] for r in records]).astype(np.float32)}
  if boxes is not None:
    arrays["region_boxes"] = boxes
  if tokenizer is not None:
    layout = pipeline.text_layout(tokenizer, max_text_len)
    prompts = [instruction(pipeline.as_text(r["source"]), name_corpus) for r in records]
    train = [pipeline.encode_text(tokenizer, layout, p, _answer(r, scheme)) for p, r in zip(prompts, records)]
    test = [pipeline.encode_text(tokenizer, layout, p, None) for p in prompts]
    for key in train[0]:
      arrays[key] = np.stack([t[key] for t in train])
      arrays[f"eval_{key}"] = np.stack([t[key] for t in test])
  return Clips(arrays, tuple(pipeline.as_text(r["subject"]) for r in records), tuple(names),
               tuple(pipeline.as_text(r["source"]) for r in records))
