"""Finding, building and checking the TFDS datasets deft-jax reads.

Names are "builder" or "builder/config" (as in TFDS). Builders live in data_builders/ and
always write array_record, which `data_source` reads without TensorFlow.
"""

import importlib
import os

import tensorflow_datasets as tfds
from etils import epath

# name -> module holding that dataset's `Builder`.
BUILDERS = {
    "synthetic_me": "data_builders.synthetic_me.synthetic_me_dataset_builder",
    "casme2": "data_builders.casme2.casme2_dataset_builder",
    "samm": "data_builders.samm.samm_dataset_builder",
    "smic": "data_builders.smic.smic_dataset_builder",
    "casme3": "data_builders.casme3.casme3_dataset_builder",
    "megc2019": "data_builders.megc2019.megc2019_dataset_builder",
    "megc2019_composite": "data_builders.megc2019_composite.megc2019_composite_dataset_builder",
    "uni_mer": "data_builders.uni_mer.uni_mer_dataset_builder",
}


class DatasetError(RuntimeError):
  """A dataset directory that is missing, half-built or corrupt."""


def builder(name: str, data_dir: str | os.PathLike, manual_dir: str | os.PathLike | None = None):
  """The TFDS builder for `name` ("builder" or "builder/config") writing to data_dir."""
  base, _, config = name.partition("/")
  if base not in BUILDERS:
    raise DatasetError(f"unknown dataset {base!r}; known: {sorted(BUILDERS)}")
  cls = importlib.import_module(BUILDERS[base]).Builder
  kwargs = {"config": config} if config else {}
  if config and config not in cls.builder_configs:
    raise DatasetError(f"dataset {base!r} has no config {config!r}; known: {sorted(cls.builder_configs)}")
  download_config = tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir)) if manual_dir else None
  b = cls(data_dir=os.fspath(data_dir), file_format="array_record", **kwargs)
  b._deft_download_config = download_config  # pylint: disable=protected-access
  return b


def prepare(name: str, data_dir, manual_dir=None):
  """Builds `name` unless a complete copy is there; checks the copy either way.

  TFDS writes into an `incomplete.*` folder and renames it when done, so an interrupted
  build never shadows a finished one and nothing finished is overwritten.
  """
  b = builder(name, data_dir, manual_dir)
  if not b.is_prepared() and epath.Path(b.data_dir).exists() and any(epath.Path(b.data_dir).iterdir()):
    raise DatasetError(f"{b.data_dir}: holds files but no finished dataset (no dataset_info.json); "
                       "move or delete it to rebuild")
  if not b.is_prepared():
    b.download_and_prepare(download_config=b._deft_download_config)  # pylint: disable=protected-access
  check(b)
  return b


def check(b) -> None:
  """Raises DatasetError unless every split's records are there and readable."""
  root = epath.Path(b.data_dir)
  if not (root / "dataset_info.json").exists():
    raise DatasetError(f"{root}: no dataset_info.json; the build did not finish (delete it to rebuild)")
  try:
    sources = b.as_data_source()
  except Exception as e:  # TFDS raises many kinds; all mean the same thing here.
    raise DatasetError(f"{root}: cannot open the records ({type(e).__name__}: {e})") from e
  for split, source in sources.items():
    expected = b.info.splits[split].num_examples
    try:
      n = len(source)
      for i in {0, n - 1} if n else ():
        source[i]
    except Exception as e:
      raise DatasetError(f"{root}: split {split!r} is unreadable ({type(e).__name__}: {e})") from e
    if n != expected:
      raise DatasetError(f"{root}: split {split!r} holds {n} records, dataset_info.json says {expected}")
