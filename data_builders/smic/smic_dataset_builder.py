"""smic: SMIC-HS (Li et al., FG 2013) from a user's copy; 16 subjects, 164 clips, 100 fps.

One split, 'train', holds every clip; leave-one-subject-out folds come from `subject` ("s1").
Clip ids are "s1/s1_ne_01". The class is the folder (negative, positive, surprise); SMIC has
no AU codes (empty AU vectors and string). Each clip folder spans onset to offset, so onset
is its first frame and offset its last; the apex is not annotated and is spotted from
motion (deft_jax.flow.spot_apex: the frame of largest mean TV-L1 flow from the onset on
the grey face crops; the middle frame, noted, if nothing moves). The face box is found on
the onset frame (config `face`).

Bad data: a frame missing between the first and last, an unreadable image, a clip folder
without images, a class folder that is not an emotion of emotions.py: clip skipped. No face
found on the onset frame: centre square, noted. No HS folder: the build stops.
Skips and notes are printed at the end and kept in metadata.json ("build_report").
"""

import os
import pathlib
import re

import tensorflow_datasets as tfds

from deft_jax.data import corpus_errors, clip_frames, manual, sheets

HS_DIRS = ("SMIC_all_raw/HS", "SMIC/HS", "HS", ".")


def list_clips(root: pathlib.Path, report: manual.Report) -> list[manual.Clip]:
  """Every clip folder under HS/<subject>/micro/<class>/."""
  hs = sheets.find_dir(root, HS_DIRS, r"s\d+", "SMIC-HS subject folders")
  subjects = sorted((p for p in hs.iterdir() if p.is_dir() and re.fullmatch(r"s\d+", p.name)),
                    key=lambda p: int(p.name[1:]))
  clips = []
  for subject in subjects:
    micro = subject / "micro"
    for folder in sorted(micro.glob("*/*")) if micro.is_dir() else ():
      if not folder.is_dir():
        continue
      clip_id, where = f"{subject.name}/{folder.name}", os.fspath(folder.relative_to(root))
      try:
        frames = clip_frames.frame_files(folder)
      except corpus_errors.Skip as e:
        report.skip(where, str(e), clip_id)
        continue
      if not frames:
        report.skip(where, "no frame images", clip_id)
        continue
      clips.append(manual.Clip(
          clip_id=clip_id, subject=subject.name, source="smic", where=where, frames=frames,
          onset=min(frames), apex=None, offset=max(frames), emotion=folder.parent.name))
  return clips


class Builder(manual.ManualBuilder):
  """SMIC-HS clips: face crops, onset->apex TV-L1 flow and strain, labels, spotted apex."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "First release.",
                   "1.1.0": "Faces aligned by 68 landmarks (dlib), which each record carries; emotion only (schemes at read time)."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  SMIC is licence-gated: ask its authors (University of Oulu) for it, unpack it, and pass
  the folder as manual_dir:

    manual_dir/
      SMIC_all_raw/HS/s1/micro/negative/s1_ne_01/image586870.bmp ...
                         (classes: negative, positive, surprise)

  Faces are detected with OpenCV's Haar cascade, which needs opencv-python < 5.
  """
  SOURCE = "smic"
  list_clips = staticmethod(list_clips)
