"""casme3: CAS(ME)^3 part A (Li et al., IEEE TPAMI 2023) from a user's copy; 30 fps.

One split, 'train', holds every micro-expression of part A; leave-one-subject-out folds come
from `subject` ("spNO.1"). A part A video holds several micro-expressions, so clip ids are
"spNO.1/a/<onset>". Frames are the colour frames (<subject>/<video>/color/<n>.jpg, numbered
as the label sheet's JpgIndex columns); the face box is found on the onset frame (config
`face`). Labels: the sheet's `emotion` column (7 classes: casme3-7; casme3-3/4 via
emotions.py); the `Objective class` column is not used.

Bad data, handled as users of CAS(ME)^3 expect:
- Apex "/", -1 or empty: spotted from motion (deft_jax.flow.spot_apex: largest TV-L1 flow
  from the onset; the middle frame if nothing moves), noted.
  Onset or Offset unknown: clip skipped (a video holds several micro-expressions, so its
  first or last frame says nothing).
- A frame cell that is no frame number, apex outside (onset, offset], a frame missing
  between onset and offset, an unreadable image, no frame folder, an emotion that is not
  one of emotions.py (after "happy" -> "happiness", "sad" -> "sadness"): clip skipped.
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
    "onset": ("onset", "onsetframe"),
    "apex": ("apex", "apexframe"),
    "offset": ("offset", "offsetframe"),
    "aus": ("au", "aus", "actionunits", "actionunit"),
    "emotion": ("emotion", "estimatedemotion"),
}
FRAME_DIRS = ("part_A/data/part_A", "data/part_A", "part_A", ".")


def subject_folder(value: str) -> str:
  """"1" or "spNO.1" -> "spNO.1"."""
  number = re.fullmatch(r"(?:spNO\.)?(\d+)", value, re.IGNORECASE)
  if not number:
    raise corpus_errors.Skip(f"subject {value!r} is not a CAS(ME)^3 subject (spNO.<n>)")
  return f"spNO.{int(number[1])}"


def list_clips(root: pathlib.Path, report: manual.Report) -> list[manual.Clip]:
  """The micro-expressions the part A label sheet annotates, with their frame files."""
  sheet = sheets.find_file(root, ("cas(me)3_part_A_ME_label*.xlsx", "*part_A*ME*label*.xlsx",
                                  "*ME*label*.xlsx", "*.xlsx"),
                           "CAS(ME)^3 part A label sheet (cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx)")
  videos = sheets.find_dir(root, FRAME_DIRS, r"spNO\.\d+", "CAS(ME)^3 part A frame folders")
  folders = {}  # a video's frames, listed once for all its micro-expressions

  def make(row: sheets.Row) -> manual.Clip:
    subject, name = subject_folder(row.text("subject")), row.text("filename")
    folder = videos / subject / name
    folder = folder / "color" if (folder / "color").is_dir() else folder
    if not name or not folder.is_dir():
      raise corpus_errors.Skip(f"no frame folder {folder}")
    if folder not in folders:
      folders[folder] = clip_frames.frame_files(folder)
    onset, offset = row.frame("onset"), row.frame("offset")
    for field, value in (("onset", onset), ("offset", offset)):
      if value is None:
        raise corpus_errors.Skip(f"field {row.headers[field]!r} is not annotated")
    return manual.Clip(
        clip_id=f"{subject}/{name}/{onset}", subject=subject, source="casme3", where=row.where,
        frames=folders[folder], onset=onset, apex=row.frame("apex"), offset=offset,
        emotion=row.text("emotion"), au_string=row.text("aus"))

  return sheets.rows_to_clips(sheets.read_sheet(sheet, COLUMNS), make, report)


class Builder(manual.ManualBuilder):
  """CAS(ME)^3 part A clips: face crops, onset->apex TV-L1 flow and strain, AUs, labels."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "First release.",
                   "1.1.0": "Faces aligned by 68 landmarks (dlib), which each record carries; emotion only (schemes at read time)."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  CAS(ME)^3 is licence-gated: ask its authors (Institute of Psychology, Chinese Academy of
  Sciences) for part A, unpack it, and pass the folder as manual_dir:

    manual_dir/
      cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx   Subject, Filename, Onset, Apex, Offset, AU,
                                                  Objective class, emotion
      part_A/data/part_A/spNO.1/a/color/0.jpg ...

  Faces are detected with OpenCV's Haar cascade, which needs opencv-python < 5.
  """
  SOURCE = "casme3"
  list_clips = staticmethod(list_clips)
