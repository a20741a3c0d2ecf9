"""megc2019_composite on a tiny fake manual_dir in the distributed layout (no real files)."""

import csv
import pathlib

import cv2
import numpy as np
import pytest

from data_builders.megc2019_composite import megc2019_composite_dataset_builder as comp
from deft_jax.data import build, pipeline

# (dataset, sub, clip, label, imagename): CASME II clip names repeat across subjects; SMIC's
# face file is named differently from its flow file.
ROWS = [
    ("casme2", "sub01", "EP02_01f", 1, "sub01_EP02_01f.jpg"),
    ("casme2", "sub02", "EP02_01f", 0, "sub02_EP02_01f.jpg"),
    ("casme2", "sub02", "EP03_02", 2, "sub02_EP03_02.jpg"),
    ("smic", "s01", "s01_ne_01", 0, "s01_s1_ne_01.jpg"),
    ("smic", "s01", "s01_po_02", 1, "s01_s1_po_02.jpg"),
    ("samm", "006", "006_1_2", 0, "006_006_1_2.jpg"),
    ("samm", "007", "007_3_1", 2, "007_007_3_1.jpg"),
]


def write_layout(root: pathlib.Path, rows=ROWS, seed: int = 0) -> dict:
  """The CSV and both folders; returns {key: the RGB (u, v, strain) png written}."""
  rng = np.random.default_rng(seed)
  (root / comp.FLOW_DIR).mkdir(parents=True)
  (root / comp.FACE_DIR).mkdir(parents=True)
  pngs = {}
  with open(root / comp.CSV_NAME, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["dataset", "sub", "filename_o", "label", "apex", "imagename", "sub_filename"])
    for dataset, sub, clip, label, image in rows:
      w.writerow([dataset, sub, clip, label, "", image, ""])
      png = rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)
      cv2.imwrite(str(comp.flow_file(root, sub, clip)), png[..., ::-1])  # OpenCV writes BGR
      face = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
      cv2.imwrite(str(root / comp.FACE_DIR / image), face)
      pngs[f"{dataset}/{sub}/{clip}"] = png
  return pngs


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  root = tmp_path_factory.mktemp("manual")
  pngs = write_layout(root)
  b = build.prepare("megc2019_composite/f56", tmp_path_factory.mktemp("tfds"), root)
  return b, pngs


def test_records_keep_the_flow_as_distributed(built):
  b, pngs = built
  source = b.as_data_source()["train"]
  records = {source[i]["clip_id"].decode(): source[i] for i in range(len(source))}
  assert sorted(records) == sorted(pngs)  # the repeated CASME II name is two clips
  for key, png in pngs.items():
    r = records[key]
    np.testing.assert_array_equal(comp.flow_to_png(r["flow"], r["strain"]), png)  # invertible, RGB = u, v, strain
    assert r["flow"].min() >= -1 and r["flow"].max() <= 1 and r["strain"].min() >= 0 and r["strain"].max() <= 1
    assert r["frames"].shape == (1, 56, 56, 3) and r["flow"].shape == (28, 28, 2) and r["strain"].shape == (28, 28)
    assert b"flow alone" in r["provenance"] and r["aus"].sum() == 0
    dataset, sub, _ = key.split("/")
    assert r["subject"].decode() == f"{dataset}_{sub}" and r["source"].decode() == dataset
  smic = records["smic/s01/s01_ne_01"]
  assert smic["face_file"].decode().endswith("s01_s1_ne_01.jpg")
  assert smic["flow_file"].decode().endswith("s01_s01_ne_01 .png")
  for key, r in records.items():
    label = comp.CLASSES[dict(((d, s, c), l) for d, s, c, l, _ in ROWS)[tuple(key.split("/"))]]
    assert pipeline.record_label(r, "composite") == comp.CLASSES.index(label)
    assert f"Emotion: {label}\n" in r["answer"].decode()
  assert dict(b.info.metadata["class_counts"]) == {"negative": 3, "positive": 2, "surprise": 2}


def test_face_is_the_csv_imagename(tmp_path):
  rows = [("smic", "s01", "s01_ne_01", 0, "s01_s1_ne_01.jpg")]
  write_layout(tmp_path, rows)
  face = cv2.imread(str(tmp_path / comp.FACE_DIR / "s01_s1_ne_01.jpg"))[..., ::-1]
  (row, _, read, _), = comp.read_clips(tmp_path, 224)
  np.testing.assert_array_equal(read, face)


def _error(tmp_path, break_it) -> str:
  root = tmp_path / "manual"
  write_layout(root)
  break_it(root)
  data_dir = tmp_path / "tfds"
  with pytest.raises(build.DatasetError) as e:
    build.prepare("megc2019_composite/f56", data_dir, root)
  b = build.builder("megc2019_composite/f56", data_dir, root)
  assert not b.is_prepared()  # nothing half-written is left as a dataset
  return str(e.value)


def _rewrite_csv(root, change):
  path = root / comp.CSV_NAME
  rows = list(csv.reader(open(path)))
  change(rows)
  with open(path, "w", newline="") as f:
    csv.writer(f).writerows(rows)


def test_missing_unreadable_and_wrong_size_files_are_named_with_their_rows(tmp_path):
  def break_it(root):
    comp.flow_file(root, "sub02", "EP03_02").unlink()
    (root / comp.FACE_DIR / "006_006_1_2.jpg").write_bytes(b"not an image")
    cv2.imwrite(str(comp.flow_file(root, "s01", "s01_po_02")), np.zeros((32, 32, 3), np.uint8))
  msg = _error(tmp_path, break_it)
  assert "3 clip(s) cannot be read" in msg
  assert "row 4 (casme2/sub02/EP03_02): flow file" in msg and "sub02_EP03_02 .png is missing" in msg
  assert "row 7 (samm/006/006_1_2): face file" in msg and "unreadable" in msg
  assert "row 6 (smic/s01/s01_po_02): flow file" in msg and "is 32x32x3; expected 28x28x3" in msg


def test_a_face_of_the_wrong_size_is_named(tmp_path):
  msg = _error(tmp_path, lambda root: cv2.imwrite(str(root / comp.FACE_DIR / "sub01_EP02_01f.jpg"),
                                                  np.zeros((100, 224, 3), np.uint8)))
  assert "row 2 (casme2/sub01/EP02_01f): face file" in msg and "is 100x224x3; expected 224x224x3" in msg


def test_bad_labels_empty_subjects_and_repeats_are_named(tmp_path):
  def change(rows):
    rows[1][3] = "3"
    rows[2][1] = ""
    rows.append(list(rows[4]))
  msg = _error(tmp_path, lambda root: _rewrite_csv(root, change))
  assert "row 2: field 'label' is '3'; expected 0, 1 or 2" in msg
  assert "row 3: field 'sub' is empty" in msg
  assert "row 9: clip smic/s01/s01_ne_01 repeats row 5" in msg


def test_missing_csv_or_column(tmp_path):
  assert "no combined_3_class2_for_optical_flow.csv" in _error(tmp_path, lambda root: (root / comp.CSV_NAME).unlink())


def test_missing_column_is_named(tmp_path):
  msg = _error(tmp_path, lambda root: _rewrite_csv(root, lambda rows: rows[0].__setitem__(5, "image")))
  assert "no column 'imagename'" in msg


def test_class_counts_of_the_full_composite_are_checked():
  rows = [comp.Row(i, "smic", f"s{i % 68}", f"c{i}", 0 if i < 250 else 1 if i < 359 else 2, "x.jpg")
          for i in range(442)]
  assert "negative 250, positive 109, surprise 83" in comp.check_counts(rows)
  swapped = [comp.Row(r.number, r.dataset, r.sub, r.clip, {0: 1, 1: 0}.get(r.label, 2), r.imagename) for r in rows]
  with pytest.raises(comp.CompositeError, match="not the composite's"):
    comp.check_counts(swapped)
