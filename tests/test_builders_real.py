"""Builders of the real MER datasets, run on tiny fake manual_dirs in each dataset's layout.

Faces come from the synthetic generator, so each clip's onset->apex flow is known exactly.
Builds run once per module (TV-L1 compiles once per crop size); tests read the records.
"""

import dataclasses
import importlib.util
import json
import pathlib

import cv2
import numpy as np
import pytest
import tensorflow_datasets as tfds

from data_builders.casme2 import casme2_dataset_builder as casme2
from data_builders.casme3 import casme3_dataset_builder as casme3
from data_builders.megc2019 import megc2019_dataset_builder as megc2019
from data_builders.samm import samm_dataset_builder as samm
from data_builders.smic import smic_dataset_builder as smic
from corpus_layouts import SAMM_HEADER, records, write_sheet
from deft_jax import cli
from deft_jax.data import build, clip_flow, faces, features, clip_frames, manual, pipeline, sheets, synthetic
from deft_jax.facs import catalogue, emotions

T, S, FACE = 4, 32, 48  # record frames, record crop size, rendered face size
CONFIG = manual.ClipConfig(name="test", num_frames=T, size=S, face="centre")
# Still head, no blinks: the apex is then the frame most different from the onset.
CAPTURE = dataclasses.replace(synthetic.SOURCES["casme2"], noise=0.004, head_motion=0.0,
                              blink_rate=0.0, amplitude=(2.0, 2.6))



@dataclasses.dataclass
class Fake:
  """A rendered clip and where its frames went."""
  record: dict
  first: int  # frame number of the first file

  @property
  def marks(self) -> tuple[int, int, int]:
    """Onset, apex and offset as frame numbers."""
    return tuple(self.first + int(self.record[k]) for k in ("onset_index", "apex_index", "offset_index"))


def render(rng, emotion: str, num_frames: int = 8) -> dict:
  subject = synthetic.make_subject("fake", rng)
  return synthetic.make_clip(subject, emotion, CAPTURE, rng, num_frames=num_frames, size=FACE)


def write_frames(folder: pathlib.Path, frames, name, canvas_width: int | None = None):
  """Frames as image files; with canvas_width, each face sits mid-way in a wider frame."""
  folder.mkdir(parents=True, exist_ok=True)
  for i, frame in enumerate(frames):
    if canvas_width:
      canvas = np.full((FACE, canvas_width, 3), 70, np.uint8)
      x0 = (canvas_width - FACE) // 2
      canvas[:, x0:x0 + FACE] = frame
      frame = canvas
    path = folder / name(i)
    quality = [cv2.IMWRITE_JPEG_QUALITY, 100] if path.suffix == ".jpg" else []
    cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), quality)


def build_with(builder_cls, manual_dir, data_dir):
  b = builder_cls(config=CONFIG, data_dir=str(data_dir), file_format="array_record")
  b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  return b


def expected_crop(fake: Fake, number: int) -> np.ndarray:
  return cv2.resize(fake.record["frames"][number - fake.first], (S, S), interpolation=cv2.INTER_AREA)


def expected_flow(fake: Fake) -> np.ndarray:
  return cv2.resize(fake.record["flow"], (S, S), interpolation=cv2.INTER_AREA) * S / FACE


def reasons(b) -> dict[str, str]:
  report = b.info.metadata["build_report"]
  return {s["clip_id"] or s["where"]: s["reason"] for s in report["skipped"]}


# CASME II: Subject as a number, "/" cells, aligned crops for most clips, bad rows. -------------

CASME2_HEADER = ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units",
                 "Estimated Emotion"]
CASME2_ROWS = [  # subject, filename, emotion, AU cell, what is odd about it
    (1, "EP01_01f", "happiness", "6+R12B", ""),
    (1, "EP02_01f", "repression", "14", "apex /"),
    (2, "EP03_02f", "surprise", "1+2+AU5+26", "no crops"),
    (2, "EP04_02f", "fear", "4+43+?", ""),
    (1, "EP05_01f", "others", "L10+R10", ""),
    (1, "EP06_01f", "disgust", "9", "missing frame"),
    (2, "EP07_02f", "disgust", "9", "onset after apex"),
    (2, "EP08_02f", "confusion", "4", ""),
    (2, "EP09_02f", "disgust", "4", "unreadable apex"),
    (1, "EP10_01f", "disgust", "4", "apex abc"),
]
CASME2_GOOD = {"sub01/EP01_01f", "sub01/EP02_01f", "sub02/EP03_02f", "sub02/EP04_02f", "sub01/EP05_01f"}


def make_casme2(root: pathlib.Path, rng) -> dict[str, Fake]:
  fakes, rows = {}, []
  for subject, name, emotion, au, odd in CASME2_ROWS:
    folder = f"sub{subject:02d}/{name}"
    fake = Fake(render(rng, "disgust" if emotion in ("others", "confusion") else emotion), first=46)
    fakes[folder] = fake
    frames = fake.record["frames"]
    write_frames(root / "CASME2_RAW_selected" / folder, frames, lambda i: f"img{46 + i}.jpg", 64)
    if odd != "no crops":
      write_frames(root / "Cropped" / folder, frames, lambda i: f"reg_img{46 + i}.jpg")
    onset, apex, offset = fake.marks
    if odd == "missing frame":
      (root / "CASME2_RAW_selected" / folder / f"img{onset + 1}.jpg").unlink()
      (root / "Cropped" / folder / f"reg_img{onset + 1}.jpg").unlink()
    if odd == "unreadable apex":
      (root / "Cropped" / folder / f"reg_img{apex}.jpg").write_bytes(b"not a jpeg")
    apex_cell = {"apex /": "/", "apex abc": "abc", "onset after apex": onset - 1}.get(odd, apex)
    rows.append([subject, name, onset, apex_cell, offset, au, emotion])
  write_sheet(root / "CASME2-coding-20140508.xlsx", CASME2_HEADER, rows)
  return fakes


@pytest.fixture(scope="module")
def casme2_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("manual") / "casme2"
  return root, make_casme2(root, np.random.default_rng(0))


@pytest.fixture(scope="module")
def casme2_built(casme2_dir, tmp_path_factory):
  b = build_with(casme2.Builder, casme2_dir[0], tmp_path_factory.mktemp("data"))
  return b, records(b), casme2_dir[1]


def test_casme2_writes_the_good_clips_with_their_labels(casme2_built):
  _, recs, _ = casme2_built
  assert set(recs) == CASME2_GOOD
  emotion = {f"sub{s:02d}/{n}": e for s, n, e, *_ in CASME2_ROWS}
  for clip_id, r in recs.items():
    assert r["emotion"] == emotion[clip_id]
    assert "labels" not in r  # schemes apply at read time
    assert r["subject"] == clip_id.split("/")[0] and r["source"] == "casme2"
    assert r["frames"].shape == (T, S, S, 3) and r["flow"].shape == (S, S, 2)
  happy = {scheme: emotions.label(recs["sub01/EP01_01f"]["emotion"], scheme) for scheme in emotions.SCHEMES}
  assert happy == {"composite": 1, "casme2-5": 0, "samm-5": 2, "casme3-3": 1, "casme3-4": 1, "casme3-7": 3}
  assert emotions.label(recs["sub02/EP04_02f"]["emotion"], "casme2-5") == -1  # fear: not a CASME II class
  assert emotions.label(recs["sub02/EP04_02f"]["emotion"], "composite") == 0
  assert emotions.label(recs["sub01/EP05_01f"]["emotion"], "composite") == -1
  assert pipeline.record_label(recs["sub01/EP05_01f"], "casme2-5") == 4


def test_casme2_aus_keep_laterality_and_intensity(casme2_built):
  _, recs, _ = casme2_built
  r = recs["sub01/EP01_01f"]
  i6, i12 = catalogue.au_index(6), catalogue.au_index(12)
  assert r["au_string"] == "6+R12B"
  assert np.flatnonzero(r["aus"]).tolist() == sorted([i6, i12])
  assert (r["au_side"][i6], r["au_side"][i12]) == (features.SIDE_BOTH, features.SIDE_RIGHT)
  assert (r["au_intensity"][i6], r["au_intensity"][i12]) == (0, 2)
  r = recs["sub01/EP05_01f"]  # L10+R10: both sides
  assert r["au_side"][catalogue.au_index(10)] == features.SIDE_BOTH
  r = recs["sub02/EP04_02f"]  # 4+43+?: AU4 kept, the rest reported
  assert np.flatnonzero(r["aus"]).tolist() == [catalogue.au_index(4)]


def test_casme2_samples_onset_apex_offset(casme2_built):
  _, recs, fakes = casme2_built
  for clip_id in CASME2_GOOD - {"sub01/EP02_01f"}:
    r, fake = recs[clip_id], fakes[clip_id]
    onset, apex, offset = fake.marks
    numbers, apex_index = clip_frames.sample_frames(onset, apex, offset, T)
    assert (r["onset_index"], r["apex_index"], r["offset_index"]) == (0, apex_index, T - 1)
    for frame, number in zip(r["frames"], numbers):
      assert np.abs(frame.astype(float) - expected_crop(fake, number)).mean() < 3, (clip_id, number)


def test_casme2_spots_an_unannotated_apex(casme2_built):
  b, recs, fakes = casme2_built
  r, fake = recs["sub01/EP02_01f"], fakes["sub01/EP02_01f"]
  notes = [n for n in b.info.metadata["build_report"]["notes"] if n["kind"] == "apex_spotted"]
  assert [n["clip_id"] for n in notes] == ["sub01/EP02_01f"]
  spotted = int(notes[0]["note"].rsplit(" ", 1)[1])
  assert abs(spotted - fake.marks[1]) <= 1
  assert np.abs(r["frames"][r["apex_index"]].astype(float) - expected_crop(fake, spotted)).mean() < 3


def assert_flow_follows_the_exact_flow(recs, fakes, clip_ids):
  """TV-L1 at S = 32 on sub-pixel motion: correlated with the truth, better than no flow."""
  corr, epe, still = [], [], []
  for clip_id in clip_ids:
    got, want = recs[clip_id]["flow"], expected_flow(fakes[clip_id])
    corr.append(np.corrcoef(got.ravel(), want.ravel())[0, 1])
    epe.append(np.linalg.norm(got - want, axis=-1).mean())
    still.append(np.linalg.norm(want, axis=-1).mean())
    assert corr[-1] > 0.35, (clip_id, corr[-1])
  assert np.mean(corr) > 0.5 and np.mean(epe) < np.mean(still), (corr, epe, still)


def test_casme2_flow_follows_the_exact_flow(casme2_built):
  _, recs, fakes = casme2_built
  assert_flow_follows_the_exact_flow(recs, fakes, CASME2_GOOD - {"sub01/EP02_01f"})  # EP02: spotted
  for r in recs.values():
    gray = [cv2.cvtColor(r["frames"][i], cv2.COLOR_RGB2GRAY) for i in (r["onset_index"], r["apex_index"])]
    flow, strain = clip_flow.onset_apex_flow(*gray)
    np.testing.assert_allclose(r["flow"], flow, atol=1e-4)
    np.testing.assert_allclose(r["strain"], strain, atol=1e-4)


def test_casme2_reports_every_skipped_clip(casme2_built):
  b, _, fakes = casme2_built
  why = reasons(b)
  gap = fakes["sub01/EP06_01f"].marks[0] + 1
  assert why["sub01/EP06_01f"].startswith("1 frame(s) missing from")
  assert why["sub01/EP06_01f"].endswith(f"[{gap}]")
  onset, _, offset = fakes["sub02/EP07_02f"].marks
  assert why["sub02/EP07_02f"] == (
      f"apex {onset - 1} is not after onset {onset} and at or before offset {offset}")
  assert why["sub02/EP08_02f"] == "unknown emotion 'confusion'"
  assert "unreadable image" in why["sub02/EP09_02f"] and "reg_img" in why["sub02/EP09_02f"]
  row = 1 + [n for _, n, *_ in CASME2_ROWS].index("EP10_01f") + 1
  assert why[f"CASME2-coding-20140508.xlsx row {row}"] == "field 'ApexFrame': 'abc' is not a frame number"
  report = b.info.metadata["build_report"]
  assert report["written"] == len(CASME2_GOOD) and len(report["skipped"]) == 5
  assert report["faces"] == {"aligned": 4, "centre": 1}
  unparsed = [n for n in report["notes"] if n["kind"] == "au_unparsed"]
  assert [n["clip_id"] for n in unparsed] == ["sub02/EP04_02f"] and "['43', '?']" in unparsed[0]["note"]
  on_disk = json.loads((pathlib.Path(b.data_dir) / "metadata.json").read_text())
  assert on_disk["build_report"] == report


def test_casme2_sheet_without_a_column_stops_the_build(casme2_dir, tmp_path):
  root = tmp_path / "casme2"
  root.mkdir()
  (root / "CASME2_RAW_selected").symlink_to(casme2_dir[0] / "CASME2_RAW_selected")
  write_sheet(root / "CASME2-coding-20140508.xlsx", CASME2_HEADER[:-1], [[1, "EP01_01f", 46, 48, 53, "4"]])
  with pytest.raises(build.DatasetError, match=r"CASME2-coding-20140508.xlsx.*lacks \['emotion'\]"):
    build_with(casme2.Builder, root, tmp_path / "data")


@pytest.mark.slow
def test_tfds_build_command_without_tensorflow(casme2_dir, casme2_built, tmp_path):
  assert importlib.util.find_spec("tensorflow") is None  # the point: TFDS's build, no TensorFlow
  folder = pathlib.Path(__file__).parents[1] / "data_builders" / "casme2"
  assert cli.main(["tfds", "build", str(folder), f"--manual_dir={casme2_dir[0]}", f"--data_dir={tmp_path}"]) == 0
  built = tfds.builder_from_directory(str(next((tmp_path / "casme2").glob("*/*"))))
  assert built.info.file_format.value == "array_record"
  assert set(records(built)) == set(casme2_built[1])


def test_prepare_builds_a_named_config(casme2_dir, tmp_path):
  root = tmp_path / "casme2"  # clips with aligned crops only: no face detector needed
  root.mkdir()
  for top in ("CASME2_RAW_selected", "Cropped"):
    (root / top).symlink_to(casme2_dir[0] / top)
  fakes = casme2_dir[1]
  rows = [[s, n, *fakes[f"sub{s:02d}/{n}"].marks, au, e] for s, n, e, au, _ in CASME2_ROWS[:2]]
  write_sheet(root / "CASME2-coding-20140508.xlsx", CASME2_HEADER, rows)
  b = build.prepare("casme2/t8_s28", tmp_path / "data", root)
  source = b.as_data_source()["train"]
  assert len(source) == 2
  assert source[0]["frames"].shape == (8, 28, 28, 3) and source[0]["flow"].shape == (28, 28, 2)


# SAMM: notes above the header, apex -1, whole frames (the centre square is the face). -----------

SAMM_ROWS = [  # subject, filename, emotion, AU cell, apex unknown
    (6, "006_1_2", "Anger", "4+7", False),
    (6, "006_1_3", "Contempt", "R14A+L12", True),
    (7, "007_3_1", "Other", "R14", False),
    (7, "007_5_2", "Happiness", "12.0", False),
]


@pytest.fixture(scope="module")
def samm_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("manual") / "samm"
  rng = np.random.default_rng(1)
  fakes, rows = {}, []
  for subject, name, emotion, au, unknown_apex in SAMM_ROWS:
    fake = Fake(render(rng, "disgust" if emotion == "Other" else emotion.lower()), first=5562)
    fakes[name] = fake
    write_frames(root / "SAMM" / f"{subject:03d}" / name, fake.record["frames"],
                 lambda i, s=subject: f"{s:03d}_{5562 + i:05d}.jpg", canvas_width=80)
    onset, apex, offset = fake.marks
    rows.append([subject, name, 1, onset, -1 if unknown_apex else apex, offset, offset - onset + 1,
                 "Micro - 1/2", au, "", emotion])
  rows.append([8, "008_1_1", 1, 100, 104, 110, 11, "Micro - 1/2", "4", "", "Anger"])  # no frames
  notes = [["SAMM micro-movements: FACS codes"], [], ["Apex -1: not coded"], ["Version 2"]]
  write_sheet(root / "SAMM_Micro_FACS_Codes_v2.xlsx", SAMM_HEADER, rows, notes)
  return root, fakes


@pytest.fixture(scope="module")
def samm_built(samm_dir, tmp_path_factory):
  b = build_with(samm.Builder, samm_dir[0], tmp_path_factory.mktemp("data"))
  return b, records(b), samm_dir[1]


def test_samm_finds_the_header_below_notes_and_reads_every_clip(samm_built):
  b, recs, fakes = samm_built
  assert set(recs) == {"006_1_2", "006_1_3", "007_3_1", "007_5_2"}
  assert {r["subject"] for r in recs.values()} == {"006", "007"}
  assert recs["007_3_1"]["emotion"] == "others" and pipeline.record_label(recs["007_3_1"], "samm-5") == 4
  assert pipeline.record_label(recs["006_1_3"], "samm-5") == 1 and pipeline.record_label(recs["006_1_3"], "composite") == 0
  assert pipeline.record_label(recs["006_1_2"], "samm-5") == 0
  r = recs["006_1_3"]
  i12, i14 = catalogue.au_index(12), catalogue.au_index(14)
  assert (r["au_side"][i12], r["au_side"][i14]) == (features.SIDE_LEFT, features.SIDE_RIGHT)
  assert (r["au_intensity"][i12], r["au_intensity"][i14]) == (0, 1)
  assert np.flatnonzero(recs["007_5_2"]["aus"]).tolist() == [i12]
  report = b.info.metadata["build_report"]
  assert report["faces"] == {"centre": 4}
  assert [s["where"] for s in report["skipped"]] == ["SAMM_Micro_FACS_Codes_v2.xlsx row 10"]
  assert "no frame folder" in report["skipped"][0]["reason"]
  assert [n["clip_id"] for n in report["notes"] if n["kind"] == "apex_spotted"] == ["006_1_3"]
  assert_flow_follows_the_exact_flow(recs, fakes, ["006_1_2", "007_3_1", "007_5_2"])


def test_samm_builds_with_the_real_haar_detector(samm_dir, tmp_path):
  """opencv-python<5 ships the cascades; every clip gets a crop, found or centred, and says which."""
  b = samm.Builder(config=dataclasses.replace(CONFIG, name="haar", face="haar"), data_dir=str(tmp_path),
                   file_format="array_record")
  b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(samm_dir[0])))
  faces = b.info.metadata["build_report"]["faces"]
  assert set(faces) <= {"haar", "centre (no face found)"} and sum(faces.values()) == len(b.as_data_source()["train"])


# SMIC-HS: the class is the folder, no apex, bmp frames. ----------------------------------------


@pytest.fixture(scope="module")
def smic_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("manual") / "smic"
  hs = root / "SMIC_all_raw" / "HS"
  rng = np.random.default_rng(2)
  fakes = {}
  for subject, cls, name, emotion in [("s1", "negative", "s1_ne_01", "disgust"),
                                      ("s1", "positive", "s1_po_01", "happiness"),
                                      ("s3", "surprise", "s3_sur_02", "surprise"),
                                      ("s3", "boredom", "s3_bo_01", "sadness")]:
    fake = Fake(render(rng, emotion), first=586870)
    fakes[f"{subject}/{name}"] = fake
    write_frames(hs / subject / "micro" / cls / name, fake.record["frames"],
                 lambda i: f"image{586870 + i}.bmp", canvas_width=64)
  (hs / "s3" / "micro" / "negative" / "s3_ne_05").mkdir(parents=True)
  still = np.repeat(fakes["s1/s1_ne_01"].record["frames"][:1], 8, axis=0)  # nothing moves
  write_frames(hs / "s1" / "micro" / "surprise" / "s1_sur_09", still, lambda i: f"image{100 + i}.bmp", 64)
  return root, fakes


def test_smic_labels_from_folders_and_spotted_apex(smic_dir, tmp_path):
  b = build_with(smic.Builder, smic_dir[0], tmp_path)
  recs, fakes = records(b), smic_dir[1]
  assert {k: r["emotion"] for k, r in recs.items()} == {
      "s1/s1_ne_01": "negative", "s1/s1_po_01": "positive", "s3/s3_sur_02": "surprise",
      "s1/s1_sur_09": "surprise"}
  assert [pipeline.record_label(r, "composite") for r in recs.values()] == [
      {"negative": 0, "positive": 1, "surprise": 2}[r["emotion"]] for r in recs.values()]
  assert all(pipeline.record_label(r, "casme2-5") == -1 or r["emotion"] == "surprise" for r in recs.values())
  assert all(not r["aus"].any() and r["au_string"] == "" for r in recs.values())
  assert {r["subject"] for r in recs.values()} == {"s1", "s3"}
  report = b.info.metadata["build_report"]
  assert reasons(b) == {"s3/s3_ne_05": "no frame images", "s3/s3_bo_01": "unknown emotion 'boredom'"}
  spotted = {n["clip_id"]: int(n["note"].rsplit(" ", 1)[1])
             for n in report["notes"] if n["kind"] == "apex_spotted"}
  assert set(spotted) == set(fakes) - {"s3/s3_bo_01"}
  for clip_id, number in spotted.items():
    assert abs(number - fakes[clip_id].marks[1]) <= 1, clip_id
    assert recs[clip_id]["onset_index"] == 0 and recs[clip_id]["offset_index"] == T - 1
  guessed = [(n["clip_id"], n["note"]) for n in report["notes"] if n["kind"] == "apex_middle"]
  assert guessed == [("s1/s1_sur_09", "apex not annotated and no motion found; middle frame 103 used")]


# CAS(ME)^3 part A: several micro-expressions in one long video. --------------------------------


def test_casme3_reads_several_clips_per_video(tmp_path):
  root = tmp_path / "casme3"
  rng = np.random.default_rng(3)
  video = root / "part_A" / "data" / "part_A" / "spNO.1" / "a" / "color"
  first, second = Fake(render(rng, "happiness"), first=0), Fake(render(rng, "sadness"), first=8)
  frames = np.concatenate([first.record["frames"], second.record["frames"]])
  write_frames(video, frames, lambda i: f"{i}.jpg", canvas_width=64)
  rows = [["spNO.1", "a", *first.marks, "6+12", 1, "happy"], ["spNO.1", "a", *second.marks, "1+4+15", 2, "sad"],
          ["spNO.1", "a", "/", 3, 6, "4", 2, "anger"]]
  write_sheet(root / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx",
              ["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class", "emotion"], rows)
  b = build_with(casme3.Builder, root, tmp_path / "data")
  recs = records(b)
  ids = {f"spNO.1/a/{f.marks[0]}": f for f in (first, second)}
  assert set(recs) == set(ids)
  happy, sad = (recs[k] for k in ids)
  assert (happy["emotion"], sad["emotion"]) == ("happiness", "sadness")
  assert (pipeline.record_label(happy, "casme3-7"), pipeline.record_label(sad, "casme3-7")) == (3, 4)
  assert (pipeline.record_label(happy, "casme3-4"), pipeline.record_label(sad, "casme3-3")) == (1, 0)
  assert happy["subject"] == "spNO.1" and happy["source"] == "casme3"
  assert np.flatnonzero(sad["aus"]).tolist() == [catalogue.au_index(n) for n in (1, 4, 15)]
  assert reasons(b) == {"cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx row 4": "field 'Onset' is not annotated"}
  for clip_id, fake in ids.items():
    _, apex_index = clip_frames.sample_frames(*fake.marks, T)
    assert recs[clip_id]["apex_index"] == apex_index
  assert_flow_follows_the_exact_flow(recs, ids, list(ids))


# MEGC2019: the three datasets side by side, 3 classes. ----------------------------------------


def test_megc2019_keeps_the_composite_classes(casme2_dir, samm_dir, smic_dir, tmp_path):
  root = tmp_path / "megc2019"
  root.mkdir()
  for name, made in (("casme2", casme2_dir), ("samm", samm_dir), ("smic", smic_dir)):
    (root / name).symlink_to(made[0])
  b = build_with(megc2019.Builder, root, tmp_path / "data")
  recs = records(b)
  casme2_ids = {f"casme2/{c}" for c in CASME2_GOOD - {"sub01/EP05_01f"}}  # others dropped
  samm_ids = {"samm/006_1_2", "samm/006_1_3", "samm/007_5_2"}  # others dropped
  smic_ids = {"smic/s1/s1_ne_01", "smic/s1/s1_po_01", "smic/s3/s3_sur_02", "smic/s1/s1_sur_09"}
  assert set(recs) == casme2_ids | samm_ids | smic_ids
  for clip_id, r in recs.items():
    source = clip_id.split("/")[0]
    assert r["source"] == source and r["subject"].startswith(source + "_")
    assert pipeline.record_label(r, "composite") in (0, 1, 2)
  assert recs["casme2/sub01/EP01_01f"]["subject"] == "casme2_sub01"
  assert recs["samm/006_1_2"]["subject"] == "samm_006" and recs["smic/s3/s3_sur_02"]["subject"] == "smic_s3"
  report = b.info.metadata["build_report"]
  assert {e["clip_id"] for e in report["excluded"]} == {"sub01/EP05_01f", "007_3_1"}
  assert len(report["skipped"]) == 5 + 1 + 2  # every part's bad data, reported once


# Shared pieces. ------------------------------------------------------------------------------


@pytest.mark.parametrize("onset, apex, offset, num", [(10, 13, 20, 4), (0, 1, 1, 5), (5, 9, 9, 8),
                                                      (100, 101, 160, 8), (3, 50, 51, 3)])
def test_sample_frames_holds_onset_apex_offset(onset, apex, offset, num):
  numbers, apex_index = clip_frames.sample_frames(onset, apex, offset, num)
  assert len(numbers) == num and numbers == sorted(numbers)
  assert (numbers[0], numbers[apex_index], numbers[-1]) == (onset, apex, offset)


def test_header_is_found_by_loose_names_below_notes(tmp_path):
  path = tmp_path / "sheet.xlsx"
  write_sheet(path, ["SUBJECT ", "File name", "Onset_Frame", "apex frame", "Estimated  Emotion"],
              [[1, "x", 4.0, "/", "Happy"], [None, None, None, None, None], [2, "y", "-", -1, "Other"]],
              notes=[["notes"], [None, "more notes"]])
  columns = {"subject": ("subject",), "filename": ("filename",), "onset": ("onsetframe",),
             "apex": ("apexframe",), "emotion": ("estimatedemotion",)}
  rows = list(sheets.read_sheet(path, columns))
  assert [r.number for r in rows] == [4, 6]
  assert [(r.text("subject"), r.frame("onset"), r.frame("apex")) for r in rows] == [
      ("1", 4, None), ("2", None, None)]
  assert rows[0].where == "sheet.xlsx row 4"


def test_haar_box_is_squared_with_a_margin_and_kept_inside(monkeypatch):
  class FakeCascade:
    def detectMultiScale(self, gray, **kwargs):  # pylint: disable=invalid-name
      return np.array([[10, 20, 30, 40], [100, 50, 60, 60]])

  monkeypatch.setattr(faces, "_cascade", FakeCascade)
  box = faces.detect(np.zeros((120, 200), np.uint8))
  assert box == (100, 50, 60, 60)  # the largest
  assert faces.square_box(box, 0.25, (120, 200)) == (85, 30, 90)  # moved up to fit
  assert faces.square_box(box, 0.5, (120, 200)) == (70, 0, 120)  # clipped to the image height
  assert faces.centre_box((120, 200)) == (40, 0, 120)
