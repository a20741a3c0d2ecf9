"""megc2019_composite: the MEGC2019 composite as the field distributes it, preprocessed.

The public STSTNet / HTNet code ships the composite (442 clips, 68 subjects: SMIC-HS, CASME II,
SAMM) as one CSV and two folders; a user's manual_dir holds them as they come:

    manual_dir/
      combined_3_class2_for_optical_flow.csv     dataset, sub, filename_o, label, ..., imagename
      datasets/STSNet_whole_norm_u_v_os/{sub}_{filename_o} .png   (a space before .png)
      datasets/combined_datasets_whole/{imagename}                224 x 224 face crop

Flow, as measured. Each PNG holds the onset->apex TV-L1 u, v and the optical strain at 28 x 28,
each channel min-max normalised per clip to 0..255 (STSTNet's preprocessing); its RGB channels are
(u, v, strain), so OpenCV (BGR) reads them reversed. Records keep those values under one
invertible map (no re-normalisation):
    flow[..., 0:2] = (u, v) = png / 127.5 - 1     in [-1, 1]   (png = round((flow + 1) * 127.5))
    strain         = png / 255                     in [0, 1]    (png = round(strain * 255))
The units are the per-clip min-max ones, not pixels: zero motion is not at 0, and absolute
magnitude is gone (the distributed files no longer hold it).

Faces. The crop named by the CSV's `imagename` (for 93 SMIC clips it differs from the flow file's
name) is the structure expert's one frame (onset = apex = offset = frame 0), resized to the
config's `face_size` (antialiased; SAMM's grey crops become three equal channels). The flow was
measured on the same crop, so one set of coordinates serves both.

Landmarks (1.1.0). dlib's 68 points fitted on each 224 px crop, the whole crop taken as the face
box (the crops are tight faces: dlib's HOG detector misses 29 of the 442, and where it finds the
face its box moves the points by 0.6 px on average), stored in canonical coordinates of the crop;
the flow evidence of the answers reads the regions placed on them. The crops are framed alike
but not aligned (eye centres vary by 1.4 px at 28 px, inter-ocular distance by dataset from
12.7 to 15.3 px), so folds.face_geometry can place the regions or align the flow by them.
1.0.0 stored regions.CANONICAL_68 for every clip; the config f112_canonical still does (for
runs recorded on 1.0.0, such as configs/composite_search.py's first rounds).

Keys. 21 CASME II clip names repeat across subjects, so clips are keyed dataset/sub/clip and
subjects dataset_sub; `source` is the dataset, for per-dataset slices of the pooled scores.

Answers. There are no AU labels: each record's Uni-MER answer rests on the flow evidence alone
(facs.evidence on the stored flow, then facs.dual_constraint with no labelled AU, so only motions
clear in the flow are stated, as observed motion without an AU name) and says so in `provenance`.

Bad input: every row whose file is missing, unreadable or of the wrong size, whose label is not
0, 1 or 2, or whose key fields are empty is named (CSV row, field or file) in one error raised
before any record is written. Class counts are printed and, for the full 442-row composite,
checked against the official 250 / 109 / 83.
"""

import collections
import csv
import dataclasses
import os
import pathlib

import cv2
import numpy as np
import tensorflow_datasets as tfds

from deft_jax.data import align, answers, build, features
from deft_jax.facs import catalogue, dual_constraint, emotions, evidence, regions

LAYOUT = __doc__.split("\n\n")[1]
CSV_NAME = "combined_3_class2_for_optical_flow.csv"
FLOW_DIR = "datasets/STSNet_whole_norm_u_v_os"
FACE_DIR = "datasets/combined_datasets_whole"
COLUMNS = ("dataset", "sub", "filename_o", "label", "imagename")
FLOW_SIZE, FACE_SIZE = 28, 224
CLASSES = emotions.SCHEMES["composite"]  # label 0, 1, 2
# What 1.0.0 stored for every clip (no landmarks measured): the canonical face.
CANONICAL_FACE = regions.CANONICAL_68.astype(np.float32)
OFFICIAL_COUNTS = {"negative": 250, "positive": 109, "surprise": 83}
PROVENANCE = ("cues from the optical flow alone (no AU labels in this dataset): facs.evidence on the "
              "distributed per-clip min-max flow, motions stated only where the flow shows them clearly")


class CompositeError(build.DatasetError):
  """A manual_dir whose CSV or files do not fit the composite layout; names every problem."""


def flow_file(root: pathlib.Path, sub: str, clip: str) -> pathlib.Path:
  return root / FLOW_DIR / f"{sub}_{clip} .png"


def png_to_flow(png: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(28, 28, 3) uint8 in RGB = (u, v, strain) -> flow (28, 28, 2) in [-1, 1], strain in [0, 1]."""
  png = png.astype(np.float32)
  return png[..., :2] / 127.5 - 1.0, png[..., 2] / 255.0


def flow_to_png(flow: np.ndarray, strain: np.ndarray) -> np.ndarray:
  """The inverse of png_to_flow (the stored 0..255 values, in RGB order)."""
  png = np.concatenate([(flow + 1.0) * 127.5, strain[..., None] * 255.0], -1)
  return np.clip(np.round(png), 0, 255).astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class Row:
  number: int  # CSV line number (the header is line 1)
  dataset: str
  sub: str
  clip: str
  label: int
  imagename: str

  @property
  def key(self) -> str:
    return f"{self.dataset}/{self.sub}/{self.clip}"

  @property
  def where(self) -> str:
    return f"{CSV_NAME} row {self.number} ({self.key})"


def read_csv(root: pathlib.Path) -> list[Row]:
  """The CSV's rows, checked field by field; raises CompositeError naming every bad row."""
  path = root / CSV_NAME
  if not path.is_file():
    raise CompositeError(f"{root}: no {CSV_NAME}; the manual_dir must hold it, {FLOW_DIR}/ and {FACE_DIR}/")
  with open(path, newline="", encoding="utf-8-sig") as f:
    reader = csv.DictReader(f)
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
      raise CompositeError(f"{path}: no column {', '.join(map(repr, missing))} in the header {header}")
    rows, problems, seen = [], [], {}
    for number, raw in enumerate(reader, start=2):
      cell = {k.strip(): (v or "").strip() for k, v in raw.items() if k}
      if not any(cell.values()):
        continue
      empty = [c for c in COLUMNS if not cell[c]]
      if empty:
        problems.append(f"{CSV_NAME} row {number}: field {', '.join(map(repr, empty))} is empty")
        continue
      if cell["label"] not in ("0", "1", "2"):
        problems.append(f"{CSV_NAME} row {number}: field 'label' is {cell['label']!r}; expected 0, 1 or 2 "
                        f"({', '.join(f'{i} = {c}' for i, c in enumerate(CLASSES))})")
        continue
      row = Row(number, cell["dataset"], cell["sub"], cell["filename_o"], int(cell["label"]), cell["imagename"])
      if row.key in seen:
        problems.append(f"{CSV_NAME} row {number}: clip {row.key} repeats row {seen[row.key]}")
        continue
      seen[row.key] = number
      rows.append(row)
  if problems:
    raise CompositeError(f"{path}: {len(problems)} bad row(s):\n  " + "\n  ".join(problems))
  if not rows:
    raise CompositeError(f"{path}: no clips listed")
  return rows


def read_image(path: pathlib.Path, shape: tuple[int, ...], what: str, row: Row) -> np.ndarray:
  """An image file as RGB uint8 of `shape`; raises ValueError naming the file and row."""
  if not path.is_file():
    raise ValueError(f"{row.where}: {what} file {path} is missing")
  image = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)
  if image is None:
    raise ValueError(f"{row.where}: {what} file {path} is unreadable (not an image OpenCV reads)")
  if image.shape != shape:
    raise ValueError(f"{row.where}: {what} file {path} is {'x'.join(map(str, image.shape))}; "
                     f"expected {'x'.join(map(str, shape))}")
  return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def face_landmarks(face: np.ndarray) -> np.ndarray:
  """(68, 2) float32 canonical coordinates of dlib's landmarks on a distributed face crop (RGB),
  the whole crop taken as the face's box."""
  gray = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)
  h, w = gray.shape
  points = align.landmarks68(gray, (0, 0, w, h))
  return regions.to_canonical(points, w).astype(np.float32)


def read_clips(root: pathlib.Path, face_size: int, landmarks: bool = False) -> list[tuple]:
  """(row, flow png (28, 28, 3) RGB, face (face_size, face_size, 3), landmarks (68, 2) canonical
  or None) of every row, all read before anything is written; raises CompositeError naming
  every bad file with its row."""
  rows = read_csv(root)
  clips, problems = [], []
  for row in rows:
    try:
      png = read_image(flow_file(root, row.sub, row.clip), (FLOW_SIZE, FLOW_SIZE, 3), "flow", row)
      face = read_image(root / FACE_DIR / row.imagename, (FACE_SIZE, FACE_SIZE, 3), "face", row)
    except ValueError as e:
      problems.append(str(e))
      continue
    points = face_landmarks(face) if landmarks else None
    if face_size != FACE_SIZE:
      face = cv2.resize(face, (face_size, face_size), interpolation=cv2.INTER_AREA)
    clips.append((row, png, face, points))
  if problems:
    raise CompositeError(f"{root}: {len(problems)} clip(s) cannot be read:\n  " + "\n  ".join(problems))
  return clips


def class_counts(rows) -> dict[str, int]:
  counts = collections.Counter(CLASSES[r.label] for r in rows)
  return {c: counts.get(c, 0) for c in CLASSES}


def check_counts(rows) -> str:
  """A line with the class counts; the full composite (442 rows) must match the official ones."""
  counts = class_counts(rows)
  subjects = len({(r.dataset, r.sub) for r in rows})
  line = (f"megc2019_composite: {len(rows)} clips of {subjects} subjects; "
          + ", ".join(f"{c} {n}" for c, n in counts.items()))
  if len(rows) == sum(OFFICIAL_COUNTS.values()) and counts != OFFICIAL_COUNTS:
    raise CompositeError(f"{CSV_NAME}: class counts {counts} are not the composite's {OFFICIAL_COUNTS}: "
                         "are labels 0/1/2 negative/positive/surprise?")
  return line


class FlowAnswers:
  """The Uni-MER answer of a clip from its flow alone (one constraint: no AU labels)."""

  def __init__(self):
    self.canonical = evidence.Measurer(FLOW_SIZE)

  def __call__(self, flow: np.ndarray, strain: np.ndarray, label: str, landmarks=None) -> str:
    """landmarks: the face's (68, 2) canonical points (the regions placed on them), or None."""
    measurer = self.canonical if landmarks is None else evidence.Measurer(FLOW_SIZE, landmarks=landmarks)
    m = measurer(flow, strain)
    verdict = dual_constraint.check(np.zeros(catalogue.NUM_AUS, bool), m)
    cues = answers.measured_cues(verdict, m)
    return answers.format_answer(answers.Answer(cues, label, answers.reasoning(cues, label)))


@dataclasses.dataclass
class CompositeConfig(tfds.core.BuilderConfig):
  face_size: int = 112  # the 224 px crops are stored at this size
  landmarks: bool = True  # measure them (1.1.0); False: the canonical face, as 1.0.0 stored


class Builder(tfds.core.GeneratorBasedBuilder):
  """MEGC2019 composite: 28 x 28 u, v, strain as distributed, a face crop, 3-class labels."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "First release.",
                   "1.1.0": "dlib's 68 landmarks measured on each face crop; answers read the regions placed on them."}
  BUILDER_CONFIGS = [
      CompositeConfig(name="f112", description="faces stored at 112 px (default)."),
      CompositeConfig(name="f224", description="faces as distributed, 224 px.", face_size=224),
      CompositeConfig(name="f56", description="faces at 56 px.", face_size=56),
      CompositeConfig(name="f112_canonical", description="faces at 112 px, the canonical face's landmarks "
                      "for every clip (the records of 1.0.0).", landmarks=False),
  ]
  DEFAULT_CONFIG_NAME = "f112"
  MANUAL_DOWNLOAD_INSTRUCTIONS = LAYOUT

  def _info(self) -> tfds.core.DatasetInfo:
    s = self.builder_config.face_size
    extra = {"answer": tfds.features.Text(), "provenance": tfds.features.Text(), "flow_file": tfds.features.Text(),
             "face_file": tfds.features.Text()}
    return self.dataset_info_from_configs(features=features.clip_features(1, s, extra, flow_size=FLOW_SIZE),
                                          metadata=tfds.core.MetadataDict())

  def _split_generators(self, dl_manager):
    root = pathlib.Path(os.fspath(dl_manager.manual_dir))
    measured = self.builder_config.landmarks
    if measured:
      align.check_dlib()  # before reading 442 files, not after
    clips = read_clips(root, self.builder_config.face_size, landmarks=measured)
    print(check_counts([row for row, _, _, _ in clips]))
    self.info.metadata["class_counts"] = class_counts([row for row, _, _, _ in clips])
    return {"train": self._generate_examples(clips)}

  def _generate_examples(self, clips):
    answer = FlowAnswers()
    none = np.zeros(catalogue.NUM_AUS, np.uint8)
    for row, png, face, points in clips:
      flow, strain = png_to_flow(png)
      landmarks = CANONICAL_FACE if points is None else points
      label = CLASSES[row.label]
      yield row.key, {
          "frames": face[None],
          "onset_index": 0, "apex_index": 0, "offset_index": 0,
          "flow": flow, "strain": strain,
          "aus": none, "au_intensity": none, "au_side": none, "au_string": "",
          "emotion": label,
          "landmarks": landmarks,
          "subject": f"{row.dataset}_{row.sub}",
          "clip_id": row.key,
          "source": row.dataset,
          "answer": answer(flow, strain, label, points),
          "provenance": PROVENANCE,
          "flow_file": f"{FLOW_DIR}/{row.sub}_{row.clip} .png",
          "face_file": f"{FACE_DIR}/{row.imagename}",
      }
