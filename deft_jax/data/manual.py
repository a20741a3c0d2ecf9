"""From a user's copy of a licence-gated MER dataset (its TFDS manual_dir) to clip records.

Each builder lists its clips (`Clip`: frame files by number, onset/apex/offset, labels) from
its annotation sheet and frame folders; `generate` turns them into the records of
`features.clip_features`. A clip that cannot be made is skipped with a reason, a clip made
with a fallback carries a note; both go into a `Report` that is printed at the end of the
build and kept in the dataset's metadata.json (`builder.info.metadata["build_report"]`).
Sheets and file layouts are read by sheets.py, frames by clip_frames.py, motion by clip_flow.py
(which `deft-jax predict` shares without a builder).
"""

import collections
import dataclasses
import os
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from deft_jax.data import align, build, clip_flow, clip_frames, faces, features
from deft_jax.data.corpus_errors import ManualDirError, Skip
from deft_jax.data.clip_frames import BadFrame
from deft_jax.facs import au_strings, catalogue, emotion_names, regions


@dataclasses.dataclass
class ClipConfig(tfds.core.BuilderConfig):
  """T frames of S x S pixels per clip, and how faces are found in raw frames.

  face: "dlib" finds the face on the onset frame with dlib, fits 68 landmarks and aligns the
  clip onto the canonical face (deft_jax/data/align.py); "haar" crops OpenCV's Haar box (needs
  opencv-python < 5); "centre" takes the largest centred square. Aligned crops shipped with a
  dataset are used either way.
  """
  num_frames: int = 8
  size: int = 64
  face: str = "dlib"
  face_margin: float = 0.15  # of the detected box side, added on each edge


def clip_configs() -> list[ClipConfig]:
  return [
      ClipConfig(name="t8_s64", description="8 frames, 64 px crops and flow (default)."),
      ClipConfig(name="t8_s128", description="8 frames, 128 px.", size=128),
      ClipConfig(name="t16_s128", description="16 frames, 128 px.", num_frames=16, size=128),
      ClipConfig(name="t8_s28", description="8 frames, 28 px (the STSTNet/HTNet flow size).", size=28),
  ]


@dataclasses.dataclass(frozen=True)
class Clip:
  """One annotated micro-expression, before any image is read.

  Frame numbers are those in the file names; onset, apex or offset None means not annotated
  (onset/offset: first/last frame of the folder; apex: spotted from motion).
  """
  clip_id: str
  subject: str
  source: str
  where: str  # the sheet row or folder it came from, for messages
  frames: dict[int, pathlib.Path]
  onset: int | None
  apex: int | None
  offset: int | None
  emotion: str
  au_string: str = ""
  crops: dict[int, pathlib.Path] | None = None  # aligned faces shipped with the dataset


class Report:
  """Skipped clips (bad data), excluded ones (by design) and fallbacks of one build."""

  def __init__(self, dataset: str):
    self.dataset = dataset
    self.written = 0
    self.skipped: list[dict] = []
    self.excluded: list[dict] = []
    self.notes: list[dict] = []
    self.faces = collections.Counter()

  def skip(self, where: str, reason: str, clip_id: str = "") -> None:
    self.skipped.append({"clip_id": clip_id, "where": where, "reason": reason})

  def exclude(self, clip: Clip, reason: str) -> None:
    self.excluded.append({"clip_id": clip.clip_id, "where": clip.where, "reason": reason})

  def note(self, clip: Clip, kind: str, text: str) -> None:
    self.notes.append({"clip_id": clip.clip_id, "where": clip.where, "kind": kind, "note": text})

  def as_dict(self) -> dict:
    return {"dataset": self.dataset, "written": self.written, "skipped": self.skipped,
            "excluded": self.excluded, "notes": self.notes, "faces": dict(self.faces)}

  def summary(self) -> str:
    lines = [f"{self.dataset}: {self.written} clips written, {len(self.skipped)} skipped, "
             f"{len(self.excluded)} excluded; faces: {dict(self.faces)}"]
    lines += [f"  skipped {s['clip_id'] or '-'} ({s['where']}): {s['reason']}" for s in self.skipped]
    for reason, count in collections.Counter(e["reason"] for e in self.excluded).items():
      lines.append(f"  excluded {count} clips: {reason}")
    for kind, count in collections.Counter(n["kind"] for n in self.notes).items():
      first = next(n for n in self.notes if n["kind"] == kind)
      lines.append(f"  note {kind}: {count} clips, e.g. {first['clip_id']}: {first['note']}")
    return "\n".join(lines)


def dataset_info(builder) -> tfds.core.DatasetInfo:
  """The clip features at the config's T and S; metadata.json will hold the build report."""
  cfg = builder.builder_config
  return builder.dataset_info_from_configs(
      features=features.clip_features(cfg.num_frames, cfg.size), metadata=tfds.core.MetadataDict())


# Labels ----------------------------------------------------------------------------------------

EMOTIONS = emotion_names.EMOTIONS
emotion_name = emotion_names.emotion_name  # "Happy" -> "happiness"; None if unknown


def au_vectors(text: str):
  """(multi-hot, intensity, side) over catalogue.AU_NUMBERS, and the unparsed tokens."""
  parsed, unparsed = au_strings.parse_au_string(text)
  aus, intensity, side = (np.zeros(catalogue.NUM_AUS, np.uint8) for _ in range(3))
  codes = {"both": features.SIDE_BOTH, "left": features.SIDE_LEFT, "right": features.SIDE_RIGHT}
  for number, where, level in parsed:
    i = catalogue.au_index(number)
    code = codes[where]
    side[i] = code if not aus[i] or side[i] == code else features.SIDE_BOTH  # L12+R12: both
    aus[i] = 1
    intensity[i] = max(intensity[i], level)
  return aus, intensity, side, unparsed


# Records ---------------------------------------------------------------------------------------


def generate(builder, clips, report: Report):
  """Yields (clip_id, record) per clip; then prints the report and keeps it in metadata.json."""
  cfg = builder.builder_config
  if cfg.face not in ("dlib", "haar", "centre"):
    raise ValueError(f"config {cfg.name!r}: face must be 'dlib', 'haar' or 'centre', got {cfg.face!r}")
  if cfg.face == "dlib" and any(not c.crops for c in clips):
    try:
      align.check_dlib()
    except align.AlignError as e:
      raise build.DatasetError(f"{report.dataset}: {e}") from e
  if cfg.face == "haar" and any(not c.crops for c in clips):
    try:
      faces.check_detector()
    except faces.FaceDetectorMissing as e:
      raise build.DatasetError(f"{report.dataset}: {e}") from e
  seen = {}
  for clip in clips:
    if clip.clip_id in seen:
      report.skip(clip.where, f"same clip as {seen[clip.clip_id]}", clip.clip_id)
      continue
    seen[clip.clip_id] = clip.where
    notes = []  # (kind, text), reported only for clips that are written
    try:
      record, face = make_record(clip, cfg, notes)
    except BadFrame as e:
      if getattr(builder, "stop_on_bad_frame", False):
        raise ManualDirError(f"{report.dataset}: clip {clip.clip_id} ({clip.where}): {e}") from None
      report.skip(clip.where, str(e), clip.clip_id)
      continue
    except Skip as e:
      report.skip(clip.where, str(e), clip.clip_id)
      continue
    for kind, text in notes:
      report.note(clip, kind, text)
    report.faces[face] += 1
    report.written += 1
    yield clip.clip_id, record
  builder.info.metadata["build_report"] = report.as_dict()
  print(report.summary(), flush=True)
  if not report.written:
    raise ManualDirError(f"{report.dataset}: no clip could be made; see the reasons above")


def make_record(clip: Clip, cfg: ClipConfig, notes: list) -> tuple[dict, str]:
  """Reads, crops and samples one clip and measures its onset->apex flow.

  Returns the record and how its face was cropped; fallbacks taken go into `notes`.
  """
  emotion = emotion_name(clip.emotion)
  if emotion is None:
    raise Skip(f"unknown emotion {clip.emotion!r}")
  if not clip.frames:
    raise Skip("no frame images")
  onset, apex, offset = _frame_range(clip, notes)
  files, box, face = _face(clip, onset, offset, cfg, notes)
  if apex is None:
    crops = {n: faces.crop(clip_frames.read_rgb(files[n]), box, cfg.size) for n in range(onset, offset + 1)}
    position, guess = clip_flow.spot_apex(np.stack([clip_frames.gray(crops[n]) for n in sorted(crops)]))
    apex = onset + position
    if guess:
      notes.append(("apex_middle", f"apex not annotated and no motion found; middle frame {apex} used"))
    else:
      notes.append(("apex_spotted", f"apex not annotated; spotted from motion at frame {apex}"))
  else:
    crops = {}
  numbers, apex_index = clip_frames.sample_frames(onset, apex, offset, cfg.num_frames)
  for n in set(numbers) - set(crops):
    crops[n] = faces.crop(clip_frames.read_rgb(files[n]), box, cfg.size)
  flow, strain = clip_flow.onset_apex_flow(clip_frames.gray(crops[onset]), clip_frames.gray(crops[apex]))
  aus, intensity, side, unparsed = au_vectors(clip.au_string)
  if unparsed:
    notes.append(("au_unparsed", f"AU tokens not understood: {unparsed} in {clip.au_string!r}"))
  record = {
      "frames": np.stack([crops[n] for n in numbers]),
      "onset_index": 0,
      "apex_index": apex_index,
      "offset_index": len(numbers) - 1,
      "flow": flow,
      "strain": strain,
      "aus": aus,
      "au_intensity": intensity,
      "au_side": side,
      "au_string": clip.au_string,
      "landmarks": _landmarks(box),
      "emotion": emotion,
      "subject": clip.subject,
      "clip_id": clip.clip_id,
      "source": clip.source,
  }
  return record, face


def _frame_range(clip: Clip, notes: list):
  """Onset and offset filled from the folder where not annotated, and checked."""
  onset, apex, offset = clip.onset, clip.apex, clip.offset
  if onset is None:
    onset = min(clip.frames)
    notes.append(("onset_from_folder", f"onset not annotated; first frame {onset} used"))
  if offset is None:
    offset = max(clip.frames)
    notes.append(("offset_from_folder", f"offset not annotated; last frame {offset} used"))
  if len(clip.frames) == 1:
    (only,) = clip.frames.values()
    raise Skip(f"{only.parent} holds one frame ({only.name}); a clip needs an onset and a later frame")
  if offset <= onset:
    raise Skip(f"offset {offset} is not after onset {onset}")
  if apex is not None and not onset < apex <= offset:
    raise Skip(f"apex {apex} is not after onset {onset} and at or before offset {offset}")
  missing = [n for n in range(onset, offset + 1) if n not in clip.frames]
  if missing:
    folder = next(iter(clip.frames.values())).parent
    raise Skip(f"{len(missing)} frame(s) missing from {folder}: {missing[:5]}{' ...' * (len(missing) > 5)}")
  return onset, apex, offset


def _landmarks(box) -> np.ndarray:
  """The onset face's 68 landmarks in canonical coordinates: fitted where the clip was aligned
  by them, else the canonical face (shipped crops, Haar or centre boxes)."""
  points = box.canonical_landmarks() if isinstance(box, align.Alignment) else None
  return (regions.CANONICAL_68 if points is None else points).astype(np.float32)


def _face(clip: Clip, onset: int, offset: int, cfg: ClipConfig, notes: list):
  """The files to crop from, the clip's face box (None: aligned crops) and how it was found."""
  if clip.crops:
    lacking = [n for n in range(onset, offset + 1) if n not in clip.crops]
    if not lacking:
      return clip.crops, None, "aligned"
    notes.append(("raw_frames", f"aligned crops lack frames {lacking[:5]}; raw frames used"))
  first = clip_frames.read_rgb(clip.frames[onset])
  if cfg.face == "centre":
    return clip.frames, faces.centre_box(first.shape), "centre"
  if cfg.face == "dlib":  # an Alignment crops like a box (faces.crop)
    try:
      return clip.frames, align.align(first, align.AlignConfig(size=cfg.size)), "dlib"
    except align.NoFace:
      notes.append(("no_face", "no face found on the onset frame by dlib; centre square used"))
      return clip.frames, faces.centre_box(first.shape), "centre (no face found)"
  found = faces.detect(clip_frames.gray(first))
  if found is None:
    notes.append(("no_face", "no face found on the onset frame; centre square used"))
    return clip.frames, faces.centre_box(first.shape), "centre (no face found)"
  return clip.frames, faces.square_box(found, cfg.face_margin, first.shape), "detected"


def missing_manual_dir(name: str, path) -> str:
  """The one-line error for a manual_dir that is not given, absent or empty."""
  where = f"--manual_dir {path} does not exist or is empty" if path else "no --manual_dir given"
  return (f"{name} is built from your own copy of the dataset: {where}; pass --manual_dir DIR, the folder "
          f"holding it (deft-jax build --help; its layout: data_builders/{name}/)")


class ManualBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A builder over a user's manual_dir: subclasses name their `SOURCE` and `list_clips`."""

  VERSION = tfds.core.Version("1.0.0")
  BUILDER_CONFIGS = clip_configs()
  DEFAULT_CONFIG_NAME = "t8_s64"
  SOURCE = ""
  stop_on_bad_frame = False  # True: a frame that does not decode whole stops the build (else skips its clip)

  @staticmethod
  def list_clips(root: pathlib.Path, report: "Report") -> list:
    raise NotImplementedError

  def _info(self) -> tfds.core.DatasetInfo:
    return dataset_info(self)

  def _log_download_bytes(self) -> None:
    """Instead of TFDS's "Downloading and preparing dataset Unknown size ...": nothing is downloaded."""
    print(f"building {self.name}/{self.builder_config.name} from your copy into {self.data_dir} ...", flush=True)

  def _split_generators(self, dl_manager):
    report = Report(self.SOURCE)
    try:
      manual_dir = dl_manager.manual_dir
    except AssertionError:  # TFDS's: "Manual directory ... does not exist or is empty"
      raise ManualDirError(missing_manual_dir(self.name, dl_manager._manual_dir)) from None  # pylint: disable=protected-access
    clips = type(self).list_clips(pathlib.Path(os.fspath(manual_dir)), report)
    return {"train": self._generate_examples(clips, report)}

  def _generate_examples(self, clips, report):
    return generate(self, clips, report)
