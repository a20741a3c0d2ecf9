"""samm: SAMM (Davison et al., IEEE TAC 2018) from a user's copy; 32 subjects, 200 fps, grey.

One split, 'train', holds every clip; leave-one-subject-out folds come from `subject`
("006"). Clip ids are the sheet's Filename ("006_1_2"). SAMM ships whole frames, so the face
box is found on the onset frame (config `face`) and applied to every frame of the clip.

Bad data, handled as users of SAMM expect:
- The sheet's header row sits below rows of notes: it is found by its column names.
- Apex Frame -1, "/" or empty: spotted from motion (deft_jax.flow.spot_apex: largest
  TV-L1 flow from the onset; the middle frame if nothing moves); Onset / Offset Frame
  likewise unknown: first / last frame of the folder. Each is noted.
- A frame cell that is no frame number, apex outside (onset, offset], a frame missing
  between onset and offset, an unreadable image, no frame folder, an emotion that is not
  one of emotions.py (after "other" -> "others"): clip skipped.
- AU tokens that do not parse ("?", AUs outside the catalogue): clip kept with the AUs
  that parse, the rest noted. The AU string is stored as written.
- No face found on the onset frame: centre square, noted.
- No sheet, or a sheet without the columns: the build stops, naming the file and columns.
Skips and notes are printed at the end and kept in metadata.json ("build_report").
"""

import pathlib
import re

import tensorflow_datasets as tfds

from deft_jax.data import corpus_errors, clip_frames, manual, sheets

COLUMNS = {
    "subject": ("subject", "sub"),
    "filename": ("filename", "file"),
    "onset": ("onsetframe", "onset"),
    "apex": ("apexframe", "apex"),
    "offset": ("offsetframe", "offset"),
    "aus": ("actionunits", "actionunit", "aus", "au"),
    "emotion": ("estimatedemotion", "emotion"),
}
FRAME_DIRS = ("SAMM", "SAMM_CROP", "samm", ".")


def subject_folder(value: str) -> str:
  """"6", "06" or "006" -> "006"."""
  if not re.fullmatch(r"\d+", value):
    raise corpus_errors.Skip(f"subject {value!r} is not a SAMM subject number")
  return f"{int(value):03d}"


def list_clips(root: pathlib.Path, report: manual.Report) -> list[manual.Clip]:
  """The clips the FACS-code sheet annotates, with their frame files."""
  sheet = sheets.find_file(root, ("SAMM_Micro_FACS_Codes*.xlsx", "*FACS*.xlsx", "*.xlsx"),
                           "SAMM sheet (SAMM_Micro_FACS_Codes_v2.xlsx)")
  frames = sheets.find_dir(root, FRAME_DIRS, r"\d+", "SAMM frame folders")

  def make(row: sheets.Row) -> manual.Clip:
    subject, name = subject_folder(row.text("subject")), row.text("filename")
    folder = frames / subject / name
    if not name or not folder.is_dir():
      raise corpus_errors.Skip(f"no frame folder {folder}")
    return manual.Clip(
        clip_id=name, subject=subject, source="samm", where=row.where,
        frames=clip_frames.frame_files(folder), onset=row.frame("onset"), apex=row.frame("apex"),
        offset=row.frame("offset"), emotion=row.text("emotion"), au_string=row.text("aus"))

  return sheets.rows_to_clips(sheets.read_sheet(sheet, COLUMNS), make, report)


class Builder(manual.ManualBuilder):
  """SAMM clips: face crops, onset->apex TV-L1 flow and strain, AUs, labels."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "First release.",
                   "1.1.0": "Faces aligned by 68 landmarks (dlib), which each record carries; emotion only (schemes at read time)."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  SAMM is licence-gated: ask its authors (Manchester Metropolitan University) for it,
  unpack it, and pass the folder as manual_dir:

    manual_dir/
      SAMM_Micro_FACS_Codes_v2.xlsx   notes, then a header row: Subject, Filename,
                                      Inducement Code, Onset Frame, Apex Frame, Offset Frame,
                                      Duration, Type, Action Units, Notes, Estimated Emotion
      SAMM/006/006_1_2/006_05562.jpg ...

  Faces are detected with OpenCV's Haar cascade, which needs opencv-python < 5.
  """
  SOURCE = "samm"
  list_clips = staticmethod(list_clips)
