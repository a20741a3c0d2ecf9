"""`deft-jax predict`: a face video, or a folder of frames, through a trained model.

The clip is prepared as the dataset builders prepare theirs (deft_jax/data/manual.py): one
face box found on the onset frame crops every frame; T frames are sampled from onset to
offset with onset and apex among them; the apex is spotted from TV-L1 motion unless given;
onset->apex TV-L1 flow and optical strain are measured at the model's resolution. Frame
positions (--onset, --apex, --offset) count from 0 in reading order: a video's frame
order, or a folder's images ordered by the last number in their names.

The face is found with OpenCV's Haar cascade (`--face haar`, the default; no face is an
error). `--face centre` takes the centred square instead: for frames that are face crops
already, or faces Haar does not find (the procedural faces of synthetic_me among them).
"""

import json
import os
import re

import cv2
import numpy as np

from deft_jax.data import answers, faces, manual, pipeline
from deft_jax.eval import answer_scores, evaluate, experts, plots, restore
from deft_jax.facs import catalogue, emotions
from deft_jax.models import decoding, deft

FACE_MODES = ("haar", "centre")


class PredictError(ValueError):
  """An input that cannot be predicted on; the message names the file."""


def _folder_files(folder: str) -> list[str]:
  """Image files ordered by the last number in their names (img9 before img10)."""
  names = [n for n in os.listdir(folder) if os.path.splitext(n)[1].lower() in manual.IMAGE_SUFFIXES]
  number = lambda n: int(([-1] + re.findall(r"\d+", n))[-1])
  return [os.path.join(folder, n) for n in sorted(names, key=lambda n: (number(n), n))]


def _frames(path: str):
  """Yields (RGB frame, name) of a video or a folder of images, in order."""
  if os.path.isdir(path):
    for file in _folder_files(path):
      image = cv2.imread(file, cv2.IMREAD_COLOR)
      if image is None:
        raise PredictError(f"{file}: unreadable image")
      yield cv2.cvtColor(image, cv2.COLOR_BGR2RGB), os.path.basename(file)
    return
  capture = cv2.VideoCapture(path)
  try:
    index = 0
    while True:
      ok, image = capture.read()
      if not ok:
        break
      yield cv2.cvtColor(image, cv2.COLOR_BGR2RGB), f"frame {index}"
      index += 1
  finally:
    capture.release()


def read_clip(path: str, face: str, onset: int, sizes: tuple[int, ...]):
  """Face crops of every frame at each size in `sizes`, the frame names, and the face box.

  The face is found (or the centre square taken) on frame `onset`; two passes over the
  input keep one full-size frame in memory, not the whole video.
  """
  sizes = tuple(dict.fromkeys(sizes))
  if face not in FACE_MODES:
    raise PredictError(f"face must be one of {FACE_MODES}, got {face!r}")
  if not os.path.exists(path):
    raise PredictError(f"{path}: no such file or folder")
  names, first = [], None
  for i, (image, name) in enumerate(_frames(path)):
    names.append(name)
    if i == onset:
      first = image
  if not names:
    what = f"no {'/'.join(manual.IMAGE_SUFFIXES)} images" if os.path.isdir(path) else "no frames OpenCV can read"
    raise PredictError(f"{path}: unreadable file ({what})")
  if len(names) < 3:
    raise PredictError(f"{path}: clip too short ({len(names)} frame(s)); it needs at least 3")
  if first is None:
    raise PredictError(f"{path}: onset {onset} is outside the clip of {len(names)} frames")
  if face == "centre":
    box = faces.centre_box(first.shape)
  else:
    try:
      found = faces.detect(cv2.cvtColor(first, cv2.COLOR_RGB2GRAY))
    except faces.FaceDetectorMissing as e:
      raise PredictError(f"{e} (here: --face centre)") from None
    if found is None:
      where = os.path.join(path, names[onset]) if os.path.isdir(path) else f"{path} ({names[onset]})"
      raise PredictError(f"no face found in {where}; if the frames are face crops already, pass --face centre")
    box = faces.square_box(found, manual.ClipConfig.face_margin, first.shape)
  crops = {s: [] for s in sizes}
  for image, _ in _frames(path):
    if image.shape != first.shape:
      raise PredictError(f"{path}: frames differ in size ({image.shape[:2]} and {first.shape[:2]})")
    for s in sizes:
      crops[s].append(faces.crop(image, box, s))
  return {s: np.stack(c) for s, c in crops.items()}, names, box


def _positions(path: str, num: int, onset: int, apex: int | None, offset: int | None):
  """(onset, apex or None, offset), checked against the clip's `num` frames."""
  offset = num - 1 if offset is None else offset
  if not 0 <= onset < offset < num:
    raise PredictError(f"{path}: need 0 <= onset < offset < {num} (its frames), got onset {onset}, offset {offset}")
  if apex is not None and not onset < apex <= offset:
    raise PredictError(f"{path}: apex {apex} must be after onset {onset} and at or before offset {offset}")
  return onset, apex, offset


def _example(trained: restore.Trained, crops, flow_crops, numbers, apex):
  """One model example (batch of 1) from face crops, as pipeline.Preprocess builds them."""
  cfg, tokenizer = trained.cfg, trained.tokenizer
  shapes = deft.init_batch(trained.model.config, 1, cfg.data.max_text_len)
  onset = numbers[0]
  flow, strain = manual.onset_apex_flow(manual.gray(flow_crops[onset]), manual.gray(flow_crops[apex]))
  layout = pipeline.text_layout(tokenizer, cfg.data.max_text_len)
  text = pipeline.encode_text(tokenizer, layout, answers.INSTRUCTIONS[0], None)
  clip = np.stack([crops[n] for n in numbers]) if trained.model.config.texture else shapes["clip"][0]
  example = {"keyframes": np.stack([crops[onset], crops[apex]]), "clip": clip,
             "flow": np.concatenate([flow, strain[..., None]], -1), **text}
  return {k: np.asarray(v)[None] for k, v in example.items()}, flow


def run_model(trained: restore.Trained, batch) -> tuple[np.ndarray, dict[str, np.ndarray], str]:
  """Class probabilities, probabilities without each expert, and the greedy answer."""
  model, params, tokenizer = trained.model, trained.params, trained.tokenizer
  full = np.asarray(evaluate.probabilities(model, params, batch)[0])
  without = {e: np.asarray(evaluate.probabilities(model, params, batch, (e,))[0]) for e in model.config.experts}
  embeds, mask = evaluate.prompt(model, params, batch, int(batch["prompt_len"][0]))
  tokens = decoding.generate(deft.language_model(model), params["llm"], inputs_embeds=embeds, attention_mask=mask,
                             max_new_tokens=trained.cfg.train.max_new_tokens, stop_tokens=(tokenizer.eos_token_id,),
                             pad_token_id=tokenizer.pad_token_id)
  return full, without, tokenizer.decode(np.asarray(tokens[0]), skip_special_tokens=True)


def predict(path, workdir, *, onset: int = 0, apex: int | None = None, offset: int | None = None,
            face: str = "haar", out_dir=None) -> dict:
  """Predicts on one clip and writes OUT/prediction.json and OUT/prediction.png."""
  path = os.fspath(path)
  trained = restore.load(workdir, params=False)  # the input is checked before params are read
  shapes = deft.init_batch(trained.model.config, 1, trained.cfg.data.max_text_len)
  size, flow_size, num_frames = shapes["keyframes"].shape[2], shapes["flow"].shape[1], shapes["clip"].shape[1]
  crops, names, box = read_clip(path, face, onset, (size, flow_size))
  onset, apex, offset = _positions(path, len(names), onset, apex, offset)
  spotted = None
  if apex is None:
    position, guess = manual.spot_apex(np.stack([manual.gray(c) for c in crops[flow_size][onset:offset + 1]]))
    apex, spotted = onset + position, "middle frame (no motion found)" if guess else "motion"
  numbers, _ = manual.sample_frames(onset, apex, offset, max(num_frames, 3))
  batch, flow = _example(trained, crops[size], crops[flow_size], numbers, apex)
  trained = restore.restore_params(workdir, trained)
  probs, without, text = run_model(trained, batch)
  scores = (experts.region_scores(trained.model, trained.params, batch)[0]
            if "motion" in trained.model.config.experts else None)
  classes = emotions.SCHEMES[trained.cfg.data.scheme]
  drops = {e: float(d[0]) for e, d in experts.drops(probs[None], {e: p[None] for e, p in without.items()}).items()}
  emotion = classes[int(probs.argmax())]
  result = {
      "input": os.path.abspath(path),
      "checkpoint": {"workdir": os.path.abspath(os.fspath(workdir)), "step": trained.step},
      "emotion": emotion,
      "probabilities": {c: float(p) for c, p in zip(classes, probs)},
      "experts": {e: {"drop": drops[e], "probabilities": {c: float(p) for c, p in zip(classes, without[e])}}
                  for e in without},
      "answer": {"text": text, **answer_scores.parse(text)},
      "regions": None if scores is None else {r: float(s) for r, s in zip(catalogue.REGIONS, scores)},
      "frames": len(names),
      "onset": {"index": onset, "name": names[onset]},
      "apex": {"index": apex, "name": names[apex], "spotted": spotted},
      "offset": {"index": offset, "name": names[offset]},
      "sampled": numbers,
      "face": {"mode": face, "box": list(box)},
  }
  name = os.path.basename(path.rstrip("/"))
  out_dir = os.fspath(out_dir or os.path.join(workdir, "predict", os.path.splitext(name)[0]))
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "prediction.json"), "w") as f:
    json.dump(result, f, indent=2)
  plots.prediction(crops[flow_size][onset], crops[flow_size][apex], flow, result["probabilities"], drops,
                   f"{name}: {emotion} ({probs.max():.2f})", text,
                   os.path.join(out_dir, "prediction.png"), region_scores=scores)
  result["files"] = {k: os.path.join(out_dir, f"prediction.{k}") for k in ("json", "png")}
  return result
