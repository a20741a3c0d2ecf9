"""`deft-jax predict`: a face video, or a folder of frames, through a trained model.

The face is found on the onset frame and aligned (deft_jax/data/align.py): dlib's detector
and 68 landmarks, one similarity onto the canonical face that crops every frame (`--face
dlib`, the default). `--face haar` crops OpenCV's Haar box instead (no landmarks) and
`--face centre` the centred square, for frames that are face crops already (the synthetic
faces among them). No face is an error; of several, the largest is taken unless
`--face-index` picks another (0 the largest, 1 the next, ...), and the JSON says how many.

Then, as the dataset builders prepare clips (deft_jax/data/clip_frames.py, clip_flow.py): T frames sampled from
onset to offset with onset and apex among them; the apex spotted from TV-L1 motion unless
given; onset->apex TV-L1 flow and optical strain at the model's resolution. The head's own
motion is taken out of every flow before it is read (`--head`, deft_jax/flow/head.py), and
the face regions are placed by the landmarks (canonical boxes without them). Frame positions
(--onset, --apex, --offset) count from 0 in reading order: a video's frame order, or a
folder's images ordered by the last number in their names.
"""

import json
import os
import re

import cv2
import numpy as np
import tqdm

from deft_jax import flow as flow_lib
from deft_jax.data import align, answers, clip_flow, clip_frames, pipeline, schema
from deft_jax.eval import answer_scores, evaluate, experts, plots, restore
from deft_jax.facs import catalogue, emotions, regions
from deft_jax.flow import head as head_lib
from deft_jax.models import decoding, deft

FACE_MODES = ("dlib", "haar", "centre")
DISPLAY_SIZE = 160  # px of the aligned face in the figure


class PredictError(ValueError):
  """An input that cannot be predicted on; the message names the file."""


def _folder_files(folder: str) -> list[str]:
  """Image files ordered by the last number in their names (img9 before img10)."""
  names = [n for n in os.listdir(folder) if os.path.splitext(n)[1].lower() in clip_frames.IMAGE_SUFFIXES]
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


def _align_config(face: str, face_index: int) -> align.AlignConfig:
  if face not in FACE_MODES:
    raise PredictError(f"face must be one of {FACE_MODES}, got {face!r}")
  return align.AlignConfig(detectors=(face,), landmarks=face == "dlib", size=DISPLAY_SIZE, face=face_index)


def _faces_in(path: str, face: str) -> str:
  """" showing N faces" for an image the detector can read, else ""."""
  image = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
  if image is None or face == "centre":
    return ""
  try:
    found = len(align.detect(image, face))
  except align.AlignError:
    return ""
  return f" showing {found} face{'s' * (found != 1)}"


def read_clip(path: str, face: str, onset: int, sizes: tuple[int, ...], face_index: int = 0, progress: bool = False,
              check=lambda names: None):
  """Aligned face crops of every frame at each size in `sizes`, the frame names, and the
  clip's Alignment (found on frame `onset`).

  Two passes over the input keep one full-size frame in memory, not the whole video;
  `check(names)` runs between them, so a bad frame position stops before the work.
  """
  sizes = tuple(dict.fromkeys(sizes))
  config = _align_config(face, face_index)
  if not os.path.exists(path):
    raise PredictError(f"{path}: no such file or folder")
  if os.path.isfile(path) and os.path.splitext(path)[1].lower() in clip_frames.IMAGE_SUFFIXES:
    raise PredictError(f"{path}: a single image{_faces_in(path, face)}; predict reads a clip (a video, or a "
                       "folder of at least 3 frames; of several faces the largest, or --face-index N)")
  names, first = [], None
  for i, (image, name) in enumerate(_frames(path)):
    names.append(name)
    if i == onset:
      first = image
  if not names:
    what = f"no {'/'.join(clip_frames.IMAGE_SUFFIXES)} images" if os.path.isdir(path) else "no frames OpenCV can read"
    raise PredictError(f"{path}: unreadable file ({what})")
  if len(names) < 3:
    raise PredictError(f"{path}: clip too short ({len(names)} frame(s)); it needs at least 3")
  if first is None:
    raise PredictError(f"{path}: onset {onset} is outside the clip of {len(names)} frames")
  check(names)
  where = os.path.join(path, names[onset]) if os.path.isdir(path) else f"{path} ({names[onset]})"
  try:
    alignment = align.align(first, config)
  except align.NoFace:
    raise PredictError(f"no face found in {where} by {face}; if the frames are face crops already, "
                       "pass --face centre") from None
  except align.AlignError as e:
    raise PredictError(f"{where}: {e} (--face-index counts from 0, largest first)") from None
  crops = {s: [] for s in sizes}
  frames = tqdm.tqdm(_frames(path), total=len(names), desc="align", unit="frame", disable=not progress, leave=False)
  for image, _ in frames:
    if image.shape != first.shape:
      raise PredictError(f"{path}: frames differ in size ({image.shape[:2]} and {first.shape[:2]})")
    big = alignment.crop(image, max(sizes))
    for s in sizes:
      crops[s].append(big if s == max(sizes) else cv2.resize(big, (s, s), interpolation=cv2.INTER_AREA))
  return {s: np.stack(c) for s, c in crops.items()}, names, alignment


def _positions(path: str, num: int, onset: int, apex: int | None, offset: int | None):
  """(onset, apex or None, offset), checked against the clip's `num` frames."""
  offset = num - 1 if offset is None else offset
  if not 0 <= onset < offset < num:
    raise PredictError(f"{path}: need 0 <= onset < offset < {num} (its frames), got onset {onset}, offset {offset}")
  if apex is not None and not onset < apex <= offset:
    raise PredictError(f"{path}: apex {apex} must be after onset {onset} and at or before offset {offset}")
  return onset, apex, offset


def onset_apex_flow(onset: np.ndarray, apex: np.ndarray, head: str, landmarks=None):
  """Onset->apex TV-L1 flow (S, S, 2) of two RGB crops with the head's motion taken out,
  the optical strain (S, S) of what is left, and the head's motion that came out (S, S, 2)."""
  measured = np.asarray(flow_lib.tvl1(clip_frames.gray(onset), clip_frames.gray(apex)))
  head_motion = head_lib.fit(measured, head, landmarks=landmarks)
  flow = (measured - head_motion).astype(np.float32)
  return flow, np.asarray(flow_lib.optical_strain(flow)), head_motion


def spot_apex(flow_crops: np.ndarray, head: str, landmarks=None) -> tuple[int, bool]:
  """Position of the apex in crops from the onset (first) on, and whether it is a guess: the
  frame that moved most inside the AU regions once the head's motion is out
  (MIN_APEX_MOTION of clip_flow.spot_apex says when nothing did)."""
  size = flow_crops.shape[1]
  mask = regions.region_masks(size, landmarks=landmarks).any(0)
  grays = np.stack([clip_frames.gray(c) for c in flow_crops])
  apex = flow_lib.spot_apex(grays, mask=mask, min_motion=clip_flow.MIN_APEX_MOTION, head=head, landmarks=landmarks)
  return (max(1, (len(grays) - 1) // 2), True) if apex.fallback else (apex.index, False)


def _example(trained: restore.Trained, crops, flow, strain, numbers, apex, boxes):
  """One model example (batch of 1) from face crops, as pipeline.Preprocess builds them."""
  cfg, tokenizer = trained.cfg, trained.tokenizer
  onset = numbers[0]
  layout = pipeline.text_layout(tokenizer, cfg.data.max_text_len)
  text = pipeline.encode_text(tokenizer, layout, answers.INSTRUCTIONS[0], None)
  inputs = {"keyframes": lambda: np.stack([crops[onset], crops[apex]]), "clip": lambda: np.stack([crops[n] for n in numbers]),
            "flow": lambda: np.concatenate([flow, strain[..., None]], -1)}
  example = {k: inputs[k]() for k in schema.input_shapes(trained.model.config)}
  example["region_boxes"] = np.array([boxes[r] for r in catalogue.REGIONS], np.float32)
  example = schema.conform({**example, **text}, where="predict")
  return {k: np.asarray(v)[None] for k, v in example.items()}


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


def _compilation_cache(workdir) -> None:
  """Compiled programs (TV-L1, the model) kept in WORKDIR/jax_cache, as sweeps keep theirs: a
  second predict with the same checkpoint starts without compiling (unless
  JAX_COMPILATION_CACHE_DIR already says where)."""
  import jax  # pylint: disable=import-outside-toplevel
  if not os.environ.get("JAX_COMPILATION_CACHE_DIR") and not jax.config.jax_compilation_cache_dir:
    jax.config.update("jax_compilation_cache_dir", os.path.join(os.path.abspath(os.fspath(workdir)), "jax_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


def predict(path, workdir, *, onset: int = 0, apex: int | None = None, offset: int | None = None,
            face: str = "dlib", face_index: int = 0, head: str = "similarity", out_dir=None,
            progress: bool = False, compilation_cache: bool = False) -> dict:
  """Predicts on one clip and writes OUT/prediction.json and OUT/prediction.png.

  progress: tqdm bars on stderr; compilation_cache: keep compiled programs in the workdir
  (the command does both; a library caller keeps its process's settings).
  """
  path = os.fspath(path)
  if compilation_cache:
    _compilation_cache(workdir)
  if head not in head_lib.HEAD_MODELS:
    raise PredictError(f"head must be one of {head_lib.HEAD_MODELS}, got {head!r}")
  trained = restore.load(workdir, params=False)  # the input is checked before params are read
  shapes = schema.input_shapes(trained.model.config)
  size = max((shapes[k][1] for k in ("keyframes", "clip") if k in shapes), default=64)
  flow_size = shapes["flow"][0] if "flow" in shapes else size
  num_frames = shapes["clip"][0] if "clip" in shapes else 2
  crops, names, alignment = read_clip(path, face, onset, (size, flow_size, DISPLAY_SIZE), face_index, progress,
                                      check=lambda names: _positions(path, len(names), onset, apex, offset))
  onset, apex, offset = _positions(path, len(names), onset, apex, offset)
  landmarks = alignment.canonical_landmarks()
  boxes = alignment.regions()
  spotted = None
  steps = tqdm.tqdm(total=3, desc="predict", disable=not progress, leave=False)
  if apex is None:
    steps.set_postfix_str(f"spotting the apex in {offset - onset + 1} frames")
    position, guess = spot_apex(crops[flow_size][onset:offset + 1], head, landmarks)
    apex, spotted = onset + position, "middle frame (no motion found)" if guess else "motion"
  steps.update()
  numbers, _ = clip_frames.sample_frames(onset, apex, offset, max(num_frames, 3))
  flow, strain, head_motion = onset_apex_flow(crops[flow_size][onset], crops[flow_size][apex], head, landmarks)
  batch = _example(trained, crops[size], flow, strain, numbers, apex, boxes)
  steps.set_postfix_str("restoring the model")
  trained = restore.restore_params(workdir, trained)
  steps.update()
  steps.set_postfix_str("answering")
  probs, without, text = run_model(trained, batch)
  scores = (experts.region_scores(trained.model, trained.params, batch)[0]
            if "motion" in trained.model.config.experts else None)
  steps.update()
  steps.close()
  classes = emotions.SCHEMES[trained.cfg.data.scheme]
  drops = {e: float(d[0]) for e, d in experts.drops(probs[None], {e: p[None] for e, p in without.items()}).items()}
  emotion = classes[int(probs.argmax())]
  masks = regions.region_masks(flow_size, boxes=boxes)
  result = {
      "input": os.path.abspath(path),
      "checkpoint": {"workdir": os.path.abspath(os.fspath(workdir)), "step": trained.step},
      "emotion": emotion,
      "probabilities": {c: float(p) for c, p in zip(classes, probs)},
      "experts": {e: {"drop": drops[e], "probabilities": {c: float(p) for c, p in zip(classes, without[e])}}
                  for e in without},
      "answer": {"text": text, **answer_scores.parse(text)},
      "regions": None if scores is None else {r: float(s) for r, s in zip(catalogue.REGIONS, scores)},
      "region_motion": {r: [round(float(v), 4) for v in flow[m].mean(0)] for r, m in zip(catalogue.REGIONS, masks)},
      "frames": len(names),
      "onset": {"index": onset, "name": names[onset]},
      "apex": {"index": apex, "name": names[apex], "spotted": spotted},
      "offset": {"index": offset, "name": names[offset]},
      "sampled": numbers,
      "face": {"mode": face, **alignment.as_dict()},
      "head_motion": {"model": head, "mean_px": [round(float(v), 4) for v in head_motion.reshape(-1, 2).mean(0)],
                      "max_px": round(float(np.hypot(*np.moveaxis(head_motion, -1, 0)).max()), 4)},
  }
  if alignment.faces > 1:
    result["face"]["note"] = (f"{alignment.faces} faces found; face {face_index} (0 the largest) was used, "
                              "--face-index picks another")
  name = os.path.basename(path.rstrip("/"))
  out_dir = os.fspath(out_dir or os.path.join(workdir, "predict", os.path.splitext(name)[0]))
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "prediction.json"), "w") as f:
    json.dump(result, f, indent=2)
  scale = (DISPLAY_SIZE - 1) / (alignment.size - 1)
  plots.prediction(crops[DISPLAY_SIZE][onset], crops[DISPLAY_SIZE][apex], flow, result["probabilities"], drops,
                   f"{name}: {emotion} ({probs.max():.2f})", text,
                   os.path.join(out_dir, "prediction.png"), region_scores=scores, boxes=boxes,
                   landmarks=None if alignment.landmarks is None else alignment.landmarks * scale)
  result["files"] = {k: os.path.join(out_dir, f"prediction.{k}") for k in ("json", "png")}
  return result
