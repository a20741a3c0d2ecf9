"""Finding, building and checking the TFDS datasets deft-jax reads.

Names are "builder" or "builder/config" (as in TFDS). Builders live in data_builders/ and
always write array_record, which `data_source` reads without TensorFlow.
"""

import contextlib
import fcntl
import glob
import importlib
import os
import shutil

import tensorflow_datasets as tfds
from etils import epath

def builder_module(name: str) -> str:
  """The module holding dataset `name`'s Builder: data_builders/<name>/<name>_dataset_builder.py
  (TFDS's folder layout), so a new dataset is its folder and nothing else."""
  return f"data_builders.{name}.{name}_dataset_builder"


def known_datasets() -> list[str]:
  """Every folder of data_builders/ that holds a dataset builder."""
  import data_builders  # pylint: disable=import-outside-toplevel
  folder = os.path.dirname(data_builders.__file__)
  return sorted(n for n in os.listdir(folder) if os.path.isfile(os.path.join(folder, n, f"{n}_dataset_builder.py")))


class DatasetError(RuntimeError):
  """A dataset directory that is missing, half-built or corrupt."""


def builder(name: str, data_dir: str | os.PathLike, manual_dir: str | os.PathLike | None = None,
            stop_on_bad_frame: bool = False):
  """The TFDS builder for `name` ("builder" or "builder/config") writing to data_dir.

  stop_on_bad_frame: a frame image that does not decode whole stops the build (by default
  its clip is skipped and named in the build report).
  """
  base, _, config = name.partition("/")
  if base not in known_datasets():
    raise DatasetError(f"unknown dataset {base!r}; known: {known_datasets()}")
  cls = importlib.import_module(builder_module(base)).Builder
  kwargs = {"config": config} if config else {}
  if config and config not in cls.builder_configs:
    raise DatasetError(f"dataset {base!r} has no config {config!r}; known: {sorted(cls.builder_configs)}")
  download_config = tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir)) if manual_dir else None
  b = cls(data_dir=os.fspath(data_dir), file_format="array_record", **kwargs)
  b._deft_download_config = download_config  # pylint: disable=protected-access
  if stop_on_bad_frame:
    b.stop_on_bad_frame = True
  generate = b._generate_examples  # pylint: disable=protected-access
  b._generate_examples = lambda *a, **k: unique_keys(generate(*a, **k), b.name)  # pylint: disable=protected-access
  # TFDS prints "Downloading and preparing dataset Unknown size (download: Unknown size, ...)":
  # nothing is downloaded here, so say what happens instead.
  b._log_download_bytes = lambda: print(f"building {b.name}/{b.builder_config.name if b.builder_config else ''} "  # pylint: disable=protected-access
                                        f"into {b.data_dir} ...", flush=True)
  return b


def _describe(n: int, example) -> str:
  """Where an example came from, for messages: its position and the fields that say it."""
  fields = {k: example[k] for k in ("source", "subject", "clip_id") if isinstance(example, dict) and k in example}
  fields = {k: v.decode() if isinstance(v, bytes) else v for k, v in fields.items()}
  return f"example {n}" + (f" ({', '.join(f'{k} {v}' for k, v in fields.items())})" if fields else "")


def unique_keys(examples, dataset: str):
  """Yields (key, example) pairs, stopping with a DatasetError that names a repeated key and the
  two examples that share it (TFDS's own message for this needs TensorFlow to print)."""
  seen = {}
  for n, (key, example) in enumerate(examples):
    if key in seen:
      raise DatasetError(f"{dataset}: example key {key!r} is used twice, by {seen[key]} and by {_describe(n, example)}; "
                         "each example needs its own key")
    seen[key] = _describe(n, example)
    yield key, example


def prepare(name: str, data_dir, manual_dir=None, stop_on_bad_frame: bool = False):
  """Builds `name` unless a complete copy is there; checks the copy either way.

  TFDS writes into an `incomplete.*` folder and renames it when done, so an interrupted
  build never shadows a finished one and nothing finished is overwritten.
  """
  b = builder(name, data_dir, manual_dir, stop_on_bad_frame)
  if not b.is_prepared():
    with _build_lock(b):  # one build of a dataset at a time; a second waits, then finds it built
      if not b.is_prepared():
        _remove_unfinished(b)
        if epath.Path(b.data_dir).exists() and any(epath.Path(b.data_dir).iterdir()):
          raise DatasetError(f"{b.data_dir}: holds files but no finished dataset (no dataset_info.json); "
                             "move or delete it to rebuild")
        _check_manual_dir(b, manual_dir)
        b.download_and_prepare(download_config=b._deft_download_config)  # pylint: disable=protected-access
  check(b)
  return b


@contextlib.contextmanager
def _build_lock(b):
  """An exclusive fcntl lock on the dataset config's folder while it is built (released by
  the kernel when the process ends, however it ends)."""
  folder = os.path.dirname(os.fspath(b.data_dir))
  os.makedirs(folder, exist_ok=True)
  with open(os.path.join(folder, ".deft-jax-build.lock"), "w") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    yield


def _remove_unfinished(b) -> None:
  """Removes the `incomplete.*` folders of builds of this version that were killed (TFDS
  removes its own on an error, but not after SIGKILL); called under _build_lock, so none is
  being written."""
  folder, version = os.path.split(os.fspath(b.data_dir))
  for leftover in glob.glob(os.path.join(glob.escape(folder), f"incomplete.*_{glob.escape(version)}")):
    shutil.rmtree(leftover, ignore_errors=True)
    print(f"removed {leftover}: the unfinished files of a build that was stopped", flush=True)


def _check_manual_dir(b, manual_dir) -> None:
  """Before TFDS starts: a dataset built from a user's copy needs an existing, non-empty manual_dir."""
  from deft_jax.data import corpus_errors, manual  # pylint: disable=import-outside-toplevel  # they import this module
  if not isinstance(b, manual.ManualBuilder):
    return
  path = os.fspath(manual_dir) if manual_dir else os.path.join(os.fspath(b.data_dir_root), "downloads", "manual")
  if not os.path.isdir(path) or not os.listdir(path):
    raise corpus_errors.ManualDirError(manual.missing_manual_dir(b.name, manual_dir))


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
