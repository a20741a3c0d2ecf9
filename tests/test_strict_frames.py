"""A frame that does not decode whole skips its clip, named (or stops the build by flag): issue 15, item 2."""

import pathlib
import types

import cv2
import numpy as np
import pytest
import tensorflow_datasets as tfds

from deft_jax.data import corpus_errors, clip_frames, manual


def _jpeg(path: pathlib.Path, seed: int = 0) -> bytes:
  rng = np.random.default_rng(seed)
  image = rng.integers(0, 256, (48, 40, 3), np.uint8)
  cv2.imwrite(str(path), image)
  return path.read_bytes()


def test_whole_jpeg_reads_as_opencv_decodes_it(tmp_path):
  path = tmp_path / "img1.jpg"
  _jpeg(path)
  expected = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
  np.testing.assert_array_equal(clip_frames.read_rgb(path), expected)


def test_truncated_jpeg_is_refused_by_name(tmp_path):
  path = tmp_path / "img2.jpg"
  data = _jpeg(path)
  path.write_bytes(data[: len(data) // 2])
  assert cv2.imread(str(path)) is not None  # what libjpeg does on its own: half a grey frame
  with pytest.raises(clip_frames.BadFrame, match=r"img2\.jpg: truncated JPEG"):
    clip_frames.read_rgb(path)


def test_padding_after_the_end_marker_is_accepted(tmp_path):
  path = tmp_path / "img3.jpg"
  path.write_bytes(_jpeg(path) + b"\x00" * 16)
  assert clip_frames.read_rgb(path).shape == (48, 40, 3)


def test_empty_or_garbage_frame_is_refused(tmp_path):
  for name, data in (("a.png", b""), ("b.bmp", b"not an image")):
    (tmp_path / name).write_bytes(data)
    with pytest.raises(clip_frames.BadFrame, match=name.replace(".", r"\.")):
      clip_frames.read_rgb(tmp_path / name)


def _clip(tmp_path):
  frames = {}
  for n in range(1, 5):
    frames[n] = tmp_path / f"img{n}.jpg"
    _jpeg(frames[n], seed=n)
  data = frames[1].read_bytes()
  frames[1].write_bytes(data[: len(data) // 3])
  return manual.Clip("sub01/EP01", "sub01", "casme2", "sheet.xlsx row 2", frames, 1, 2, 4, "happiness")


def _builder(stop: bool):
  cfg = manual.ClipConfig(name="t", num_frames=4, size=16, face="centre")
  return types.SimpleNamespace(builder_config=cfg, info=types.SimpleNamespace(metadata={}), stop_on_bad_frame=stop)


def test_clip_with_a_bad_frame_is_skipped_and_reported(tmp_path, capsys):
  report = manual.Report("casme2")
  with pytest.raises(corpus_errors.ManualDirError, match="no clip could be made"):
    list(manual.generate(_builder(False), [_clip(tmp_path)], report))
  (skipped,) = report.skipped
  assert skipped["clip_id"] == "sub01/EP01" and "img1.jpg: truncated JPEG" in skipped["reason"]
  assert "img1.jpg: truncated JPEG" in capsys.readouterr().out


def test_flag_stops_the_build_at_a_bad_frame(tmp_path):
  with pytest.raises(corpus_errors.ManualDirError, match=r"clip sub01/EP01 \(sheet.xlsx row 2\): .*img1\.jpg: truncated"):
    list(manual.generate(_builder(True), [_clip(tmp_path)], manual.Report("casme2")))


def test_build_passes_the_flag_to_the_builder(tmp_path):
  from deft_jax.data import build
  assert build.builder("casme2", tmp_path, tmp_path, stop_on_bad_frame=True).stop_on_bad_frame
  assert not build.builder("casme2", tmp_path, tmp_path).stop_on_bad_frame
  assert isinstance(build.builder("casme2", tmp_path), tfds.core.GeneratorBasedBuilder)
