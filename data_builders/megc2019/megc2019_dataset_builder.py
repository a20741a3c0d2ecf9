"""megc2019: the MEGC2019 composite (SMIC-HS + CASME II + SAMM, 3 classes) from users' copies.

manual_dir holds the three datasets, each laid out as its own builder expects:
manual_dir/casme2/, manual_dir/samm/, manual_dir/smic/. Clips are read by those builders'
`list_clips` (so every bad-data rule of theirs applies) and kept when their emotion has a
composite class (emotions.coarse: negative, positive, surprise); "others" is dropped, and
each dropped clip is listed in the report ("excluded"). Subjects and clip ids are prefixed
by the source ("casme2_sub01", "samm/006_1_2") so that subjects never collide across
datasets; `source` names the dataset for per-dataset slices of the pooled scores.

One split, 'train', holds every clip; leave-one-subject-out folds come from `subject`. The
official composite has 442 clips of 68 subjects; counts here follow the user's annotation
files and emotions.coarse (e.g. CASME II fear and sadness count as negative).
"""

import dataclasses
import pathlib

import tensorflow_datasets as tfds

from data_builders.casme2 import casme2_dataset_builder as casme2
from data_builders.samm import samm_dataset_builder as samm
from data_builders.smic import smic_dataset_builder as smic
from deft_jax.data import corpus_errors, manual
from deft_jax.facs import emotions

PARTS = {"smic": smic.list_clips, "casme2": casme2.list_clips, "samm": samm.list_clips}


def list_clips(root: pathlib.Path, report: manual.Report) -> list[manual.Clip]:
  """The three datasets' clips with a composite class, ids prefixed by source."""
  missing = [name for name in PARTS if not (root / name).is_dir()]
  if missing:
    raise corpus_errors.ManualDirError(f"{root}: no {', '.join(f'{m}/' for m in missing)} folder; "
                                f"it must hold casme2/, samm/ and smic/")
  clips = []
  for source, list_part in PARTS.items():
    for clip in list_part(root / source, report):
      emotion = manual.emotion_name(clip.emotion)
      if emotion is not None and emotions.coarse(emotion) is None:
        report.exclude(clip, f"{emotion}: not a composite class")
        continue
      clips.append(dataclasses.replace(
          clip, subject=f"{source}_{clip.subject}", clip_id=f"{source}/{clip.clip_id}"))
  return clips


class Builder(manual.ManualBuilder):
  """MEGC2019 composite clips: face crops, onset->apex TV-L1 flow and strain, AUs, labels."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "First release.",
                   "1.1.0": "Faces aligned by 68 landmarks (dlib), which each record carries; emotion only (schemes at read time)."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Put the three licence-gated datasets side by side, each laid out as the manual
  instructions of its own builder (casme2, samm, smic) describe:

    manual_dir/
      casme2/   CASME2-coding-20140508.xlsx, CASME2_RAW_selected/, Cropped/
      samm/     SAMM_Micro_FACS_Codes_v2.xlsx, SAMM/
      smic/     SMIC_all_raw/HS/
  """
  SOURCE = "megc2019"
  list_clips = staticmethod(list_clips)
