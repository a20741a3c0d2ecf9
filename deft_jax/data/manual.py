"""From a user's copy of a licence-gated MER dataset (its TFDS manual_dir) to clip records.

Each builder lists its clips (`Clip`: frame files by number, onset/apex/offset, labels) from
its annotation sheet and frame folders; `generate` turns them into the records of
`features.clip_features`. A clip that cannot be made is skipped with a reason, a clip made
with a fallback carries a note; both go into a `Report` that is printed at the end of the
build and kept in the dataset's metadata.json (`builder.info.metadata["build_report"]`).
"""

import collections
import dataclasses
import os
import pathlib
import re

import cv2
import numpy as np
import openpyxl
import tensorflow_datasets as tfds

from deft_jax.data import align, build, faces, features
from deft_jax.facs import au_strings, catalogue, emotion_names


class ManualDirError(build.DatasetError):
  """A manual_dir whose layout or annotation sheet cannot be read at all."""


class Skip(Exception):
  """This clip cannot be made; the message says why."""


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


# Annotation sheets ---------------------------------------------------------------------------


def normalise(header) -> str:
  """Column names compared loosely: "Onset Frame", "onset_frame" and "OnsetFrame" agree."""
  return re.sub(r"[^a-z0-9]", "", str(header or "").lower())


@dataclasses.dataclass(frozen=True)
class Row:
  """One data row of an annotation sheet, its cells keyed by field."""
  file: str
  number: int  # as the spreadsheet numbers it (1-based)
  cells: dict
  headers: dict  # field -> the column header as written

  @property
  def where(self) -> str:
    return f"{self.file} row {self.number}"

  def text(self, field: str) -> str:
    value = self.cells.get(field)
    if isinstance(value, float) and value.is_integer():
      value = int(value)  # Excel stores 12 as 12.0
    return "" if value is None else str(value).strip()

  def frame(self, field: str) -> int | None:
    """A frame number; None where the cell says unknown ("/", -1, empty)."""
    text = self.text(field)
    if text in ("", "/", "-", "-1", "?"):
      return None
    try:
      number = float(text)
    except ValueError:
      number = None
    if number is None or not number.is_integer() or number < 0:
      raise Skip(f"field {self.headers[field]!r}: {text!r} is not a frame number")
    return int(number)


def read_sheet(path: pathlib.Path, columns: dict[str, tuple[str, ...]], search_rows: int = 30):
  """Yields the data rows of the first worksheet with a header naming every field.

  columns maps each field to the normalised header names it may have, best first. The header
  may sit below rows of notes (SAMM); it is the first row, among the first `search_rows`,
  that names them all. Fully empty rows are not data and are passed over.
  """
  try:
    book = openpyxl.load_workbook(path, read_only=True, data_only=True)
  except Exception as e:  # openpyxl raises many kinds for a damaged file
    raise ManualDirError(f"{path}: cannot read the workbook ({type(e).__name__}: {e})") from e
  best = (0, None, None)
  try:
    for sheet in book.worksheets:
      rows = sheet.iter_rows(min_row=1, values_only=True)
      for number, values in enumerate(rows, start=1):
        if number > search_rows:
          break
        found = _match_header(values, columns)
        if len(found) == len(columns):
          yield from _data_rows(path.name, number, rows, found, values)
          return
        if len(found) > best[0]:
          best = (len(found), f"{sheet.title!r} row {number}", found)
  finally:
    book.close()
  missing = sorted(set(columns) - set(best[2] or {}))
  raise ManualDirError(
      f"{path}: no header row naming all of {sorted(columns)} in the first {search_rows} rows "
      f"of any sheet; closest is {best[1] or 'none'}, which lacks {missing}")


def _match_header(values, columns) -> dict[str, int]:
  names = [normalise(v) for v in values]
  found = {}
  for field, aliases in columns.items():
    for alias in aliases:
      if alias in names:
        found[field] = names.index(alias)
        break
  return found


def _data_rows(file, header_number, rows, found, header_values):
  headers = {field: str(header_values[i]).strip() for field, i in found.items()}
  for number, values in enumerate(rows, start=header_number + 1):
    if all(v is None or str(v).strip() == "" for v in values):
      continue
    cells = {field: values[i] if i < len(values) else None for field, i in found.items()}
    yield Row(file, number, cells, headers)


def rows_to_clips(rows, make, report: Report) -> list[Clip]:
  """make(row) per row; rows it raises Skip for go into the report."""
  clips = []
  for row in rows:
    try:
      clips.append(make(row))
    except Skip as e:
      report.skip(row.where, str(e))
  return clips


def find_file(root: pathlib.Path, patterns: tuple[str, ...], what: str) -> pathlib.Path:
  """The first file matching a pattern in root or its subfolders, two levels down at most."""
  for pattern in patterns:
    hits = [h for depth in ("", "*/", "*/*/") for h in sorted(root.glob(depth + pattern))]
    hits = [h for h in hits if not h.name.startswith("~$")]  # Excel lock files
    if hits:
      return hits[0]
  raise ManualDirError(f"{root}: no {what} (looked for {', '.join(patterns)})")


def find_dir(root: pathlib.Path, candidates: tuple[str, ...], holding: str, what: str) -> pathlib.Path:
  """The first candidate folder under root with a subfolder named like `holding` (a regex)."""
  for candidate in candidates:
    folder = root / candidate
    if folder.is_dir() and any(p.is_dir() and re.fullmatch(holding, p.name) for p in folder.iterdir()):
      return folder
  raise ManualDirError(f"{root}: no {what} (looked for {', '.join(candidates)} holding "
                       f"folders named like {holding})")


# Frames ----------------------------------------------------------------------------------------

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".bmp", ".png")


def frame_files(folder: pathlib.Path) -> dict[int, pathlib.Path]:
  """Image files by frame number: the last run of digits in the name (img46, 006_05562)."""
  frames = {}
  for path in folder.iterdir():
    digits = re.findall(r"\d+", path.stem)
    if path.suffix.lower() not in IMAGE_SUFFIXES or not digits:
      continue
    number = int(digits[-1])
    if number in frames:
      raise Skip(f"{folder}: {frames[number].name} and {path.name} are both frame {number}")
    frames[number] = path
  return frames


class BadFrame(Skip):
  """A frame image that does not decode whole; its clip is skipped (or, by flag, the build stops)."""


JPEG_START, JPEG_END = b"\xff\xd8", b"\xff\xd9"  # start/end-of-image markers of a whole JPEG (ITU T.81, B.2.1)


def read_rgb(path: pathlib.Path) -> np.ndarray:
  """The RGB pixels of a frame, decoded strictly.

  libjpeg decodes a truncated JPEG without failing (it greys the missing rows and prints a
  nameless "Premature end of JPEG file"), so a JPEG must end with its end-of-image marker
  (padding bytes after it allowed) before OpenCV decodes it.
  """
  try:
    data = path.read_bytes()
  except OSError as e:
    raise BadFrame(f"{path}: unreadable ({e.strerror or e})") from None
  jpeg = data.startswith(JPEG_START)
  if jpeg and not data.rstrip(b"\x00\r\n ").endswith(JPEG_END):
    raise BadFrame(f"{path}: truncated JPEG (no end-of-image marker): the frame does not decode whole")
  image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
  if image is None:
    raise BadFrame(f"{path}: unreadable image ({len(data)} bytes that do not decode)")
  return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def gray(image: np.ndarray) -> np.ndarray:
  return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def sample_frames(onset: int, apex: int, offset: int, num: int) -> tuple[list[int], int]:
  """`num` frame numbers from onset to offset holding onset (first), apex and offset (last).

  The frames between are spread evenly over onset->apex and apex->offset in proportion to
  their lengths; a clip shorter than `num` repeats frames. Returns (numbers, apex position).
  """
  if not onset < apex <= offset or num < 3:
    raise ValueError(f"need onset < apex <= offset and num >= 3, got {onset}, {apex}, {offset}, {num}")
  slots = num - 2
  rise, fall = apex - onset, offset - apex
  after = min(slots, max(1, round(slots * fall / (rise + fall)))) if fall else 0
  before = slots - after
  between = np.linspace(onset, apex, before + 2)[1:-1]
  later = np.linspace(apex, offset, after + 1)[1:]
  numbers = [onset, *np.rint(between).astype(int).tolist(), apex, *np.rint(later).astype(int).tolist()]
  return numbers, before + 1


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
    crops = {n: faces.crop(read_rgb(files[n]), box, cfg.size) for n in range(onset, offset + 1)}
    position, guess = spot_apex(np.stack([gray(crops[n]) for n in sorted(crops)]))
    apex = onset + position
    if guess:
      notes.append(("apex_middle", f"apex not annotated and no motion found; middle frame {apex} used"))
    else:
      notes.append(("apex_spotted", f"apex not annotated; spotted from motion at frame {apex}"))
  else:
    crops = {}
  numbers, apex_index = sample_frames(onset, apex, offset, cfg.num_frames)
  for n in set(numbers) - set(crops):
    crops[n] = faces.crop(read_rgb(files[n]), box, cfg.size)
  flow, strain = onset_apex_flow(gray(crops[onset]), gray(crops[apex]))
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


def _face(clip: Clip, onset: int, offset: int, cfg: ClipConfig, notes: list):
  """The files to crop from, the clip's face box (None: aligned crops) and how it was found."""
  if clip.crops:
    lacking = [n for n in range(onset, offset + 1) if n not in clip.crops]
    if not lacking:
      return clip.crops, None, "aligned"
    notes.append(("raw_frames", f"aligned crops lack frames {lacking[:5]}; raw frames used"))
  first = read_rgb(clip.frames[onset])
  if cfg.face == "centre":
    return clip.frames, faces.centre_box(first.shape), "centre"
  if cfg.face == "dlib":  # an Alignment crops like a box (faces.crop)
    try:
      return clip.frames, align.align(first, align.AlignConfig(size=cfg.size)), "dlib"
    except align.NoFace:
      notes.append(("no_face", "no face found on the onset frame by dlib; centre square used"))
      return clip.frames, faces.centre_box(first.shape), "centre (no face found)"
  found = faces.detect(gray(first))
  if found is None:
    notes.append(("no_face", "no face found on the onset frame; centre square used"))
    return clip.frames, faces.centre_box(first.shape), "centre (no face found)"
  return clip.frames, faces.square_box(found, cfg.face_margin, first.shape), "detected"


# Mean TV-L1 motion (pixels of the S x S crop) below which a clip counts as still. The sheet
# says a micro-expression is there, and one can be faint (synthetic clips at S = 32 peak at
# 0.04-0.17 px), so only a clip frozen to the noise floor falls back to the middle frame.
MIN_APEX_MOTION = 0.01


def spot_apex(grays: np.ndarray) -> tuple[int, bool]:
  """Position of the apex in grey crops from the onset (first) on, and whether it is a guess.

  deft_jax.flow.spot_apex: the frame whose TV-L1 flow from the onset is largest; the middle
  frame when nothing moves by MIN_APEX_MOTION (the guess). The clip is padded with onset
  frames (no motion) to a power of two, so TV-L1 compiles once per length bucket rather
  than once per clip length.
  """
  from deft_jax import flow  # pylint: disable=g-import-not-at-top
  n = len(grays)
  padded = np.concatenate([grays, np.repeat(grays[:1], (1 << (n - 1).bit_length()) - n, axis=0)])
  apex = flow.spot_apex(padded, min_motion=MIN_APEX_MOTION)
  return (max(1, (n - 1) // 2), True) if apex.fallback else (apex.index, False)


def onset_apex_flow(onset: np.ndarray, apex: np.ndarray):
  """Onset->apex TV-L1 flow (S, S, 2) and optical strain (S, S) of two uint8 grey crops."""
  from deft_jax import flow as flow_lib  # pylint: disable=g-import-not-at-top
  flow = flow_lib.tvl1(onset, apex)
  return np.asarray(flow), np.asarray(flow_lib.optical_strain(flow))


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
