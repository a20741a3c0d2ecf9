"""casme2: CASME II (Yan et al., PLoS ONE 2014) from a user's copy; 26 subjects, 200 fps.

One split, 'train', holds every clip; leave-one-subject-out folds come from `subject`
("sub01"). Clip ids are "sub01/EP02_01f". Faces are the dataset's aligned crops
(Cropped/<subject>/<clip>/reg_img<n>.jpg) when the clip has all of them, otherwise the
onset frame's face box (config `face`) applied to every raw frame.

Bad data, handled as users of CASME II expect:
- OnsetFrame / OffsetFrame "/", -1 or empty: first / last frame of the folder; ApexFrame
  likewise: spotted from motion (deft_jax.flow.spot_apex: largest TV-L1 flow from the
  onset; the middle frame if nothing moves). Each is noted.
- A frame cell that is no frame number, apex outside (onset, offset], a frame missing
  between onset and offset, an unreadable image, no frame folder, an emotion that is not
  one of emotions.py (after "happy" -> "happiness", "other" -> "others"): clip skipped.
- AU tokens that do not parse ("?", AUs outside the catalogue): clip kept with the AUs
  that parse, the rest noted. The AU string is stored as written.
- Fear and sadness are kept; the casme2-5 scheme labels them -1.
- No sheet, or a sheet without the columns: the build stops, naming the file and columns.
Skips and notes are printed at the end and kept in metadata.json ("build_report").
"""

import pathlib
import re

import tensorflow_datasets as tfds

from deft_jax.data import corpus_errors, clip_frames, manual, sheets

COLUMNS = {
    "subject": ("subject", "sub"),
    "filename": ("filename", "file", "folder"),
    "onset": ("onsetframe", "onset"),
    "apex": ("apexframe", "apex"),
    "offset": ("offsetframe", "offset"),
    "aus": ("actionunits", "actionunit", "aus", "au"),
    "emotion": ("estimatedemotion", "emotion"),
}
RAW_DIRS = ("CASME2_RAW_selected", "CASME2-RAW-selected", "CASME2_RAW", "CASME2-RAW", "CASME2RAW", ".")
CROPPED_DIRS = ("Cropped", "CASME2_Cropped", "cropped")


def subject_folder(value: str) -> str:
  """"1", "01" or "sub01" -> "sub01"."""
  digits = re.fullmatch(r"(?:sub)?0*(\d+)", value.strip().lower())
  if not digits:
    raise corpus_errors.Skip(f"subject {value!r} is not a CASME II subject (sub01 .. sub26)")
  return f"sub{int(digits[1]):02d}"


def list_clips(root: pathlib.Path, report: manual.Report) -> list[manual.Clip]:
  """The clips the coding sheet annotates, with their frame (and aligned crop) files."""
  sheet = sheets.find_file(root, ("CASME2-coding*.xlsx", "*coding*.xlsx", "*.xlsx"),
                           "CASME II coding sheet (CASME2-coding-20140508.xlsx)")
  raw = sheets.find_dir(root, RAW_DIRS, r"sub\d+", "CASME II raw frames")
  cropped = next((root / d for d in CROPPED_DIRS if (root / d).is_dir()), None)

  def make(row: sheets.Row) -> manual.Clip:
    subject, name = subject_folder(row.text("subject")), row.text("filename")
    folder = raw / subject / name
    if not name or not folder.is_dir():
      raise corpus_errors.Skip(f"no frame folder {folder}")
    crops = cropped / subject / name if cropped else None
    return manual.Clip(
        clip_id=f"{subject}/{name}", subject=subject, source="casme2", where=row.where,
        frames=clip_frames.frame_files(folder), onset=row.frame("onset"), apex=row.frame("apex"),
        offset=row.frame("offset"), emotion=row.text("emotion"), au_string=row.text("aus"),
        crops=clip_frames.frame_files(crops) if crops and crops.is_dir() else None)

  return sheets.rows_to_clips(sheets.read_sheet(sheet, COLUMNS), make, report)


class Builder(manual.ManualBuilder):
  """CASME II clips: face crops, onset->apex TV-L1 flow and strain, AUs, labels."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "First release.",
                   "1.1.0": "Faces aligned by 68 landmarks (dlib), which each record carries; emotion only (schemes at read time)."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  CASME II is licence-gated: ask its authors (Institute of Psychology, Chinese Academy of
  Sciences) for it, unpack it, and pass the folder as manual_dir:

    manual_dir/
      CASME2-coding-20140508.xlsx   Subject, Filename, OnsetFrame, ApexFrame, OffsetFrame,
                                    Action Units, Estimated Emotion (names matched loosely)
      CASME2_RAW_selected/sub01/EP02_01f/img46.jpg ...
      Cropped/sub01/EP02_01f/reg_img46.jpg ...   optional aligned faces, used when present
  """
  SOURCE = "casme2"
  list_clips = staticmethod(list_clips)
