"""Which records a job trains and tests on: the data folder, labelled clips, split pooling and
leave-one-subject-out folds. Trainer, sweep and report all choose clips here.
"""

import collections
import os

from deft_jax.data import build, pipeline


def data_dir(cfg) -> str:
  """Where TFDS data lives: config.data.data_dir, else $TFDS_DATA_DIR, else ~/tensorflow_datasets."""
  return os.path.expanduser(cfg.data.data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"))


def labelled(source, scheme: str) -> list:
  """The clips of `source` that have a class in `scheme`."""
  return [c for c in pipeline.index_source(source, scheme) if c.label >= 0]


def pooled_splits(cfg) -> str:
  """train_split + test_split with each distinct split once: real corpora have one split, and a
  configuration naming it twice must not see every clip twice."""
  return "+".join(dict.fromkeys((cfg.data.train_split, cfg.data.test_split)))


def check_unique(clips, where: str) -> None:
  """Stops when a clip occurs twice (it would be trained on and counted twice)."""
  counts = collections.Counter((c.source, c.subject, c.clip_id) for c in clips)
  repeated = [k for k, n in counts.items() if n > 1]
  if repeated:
    raise build.DatasetError(f"{where}: {len(repeated)} clips occur more than once, e.g. "
                             f"{'/'.join(repeated[0])} ({counts[repeated[0]]} times)")


def pooled_records(cfg, builder):
  """The train and test splits as one source, and its labelled clips (for LOSO folds)."""
  splits = pooled_splits(cfg)
  try:
    source = builder.as_data_source(split=splits)
  except ValueError as e:
    raise build.DatasetError(f"{cfg.data.name}: cannot read splits {splits!r} ({e})") from None
  info = labelled(source, cfg.data.scheme)
  check_unique(info, f"{cfg.data.name} ({splits})")
  return source, info


def select_records(cfg, builder):
  """(train source, test source, test clips): the configured splits, or with
  data.holdout_subjects a LOSO fold of the pooled splits (those subjects are the test set)."""
  sources = builder.as_data_source()
  for split in (cfg.data.train_split, cfg.data.test_split):
    if split not in sources:
      raise build.DatasetError(f"{cfg.data.name}: no split {split!r}; it has {sorted(sources)}")
  holdout = set(cfg.data.holdout_subjects)
  if holdout:
    source, info = pooled_records(cfg, builder)
    unknown = sorted(holdout - {c.subject for c in info})
    if unknown:
      raise ValueError(f"data.holdout_subjects: no labelled clips of {unknown} in {cfg.data.name} "
                       f"({pooled_splits(cfg)})")
    train_info = [c for c in info if c.subject not in holdout]
    test_info = [c for c in info if c.subject in holdout]
    train_source = test_source = source
  else:
    train_source, test_source = sources[cfg.data.train_split], sources[cfg.data.test_split]
    train_info, test_info = labelled(train_source, cfg.data.scheme), labelled(test_source, cfg.data.scheme)
  return (pipeline.Subset(train_source, [c.index for c in train_info]),
          pipeline.Subset(test_source, [c.index for c in test_info]), test_info)


def loso_subjects(cfg, builder) -> list[str]:
  """Every subject with labelled clips in the pooled splits: one LOSO fold each."""
  return sorted({c.subject for c in pooled_records(cfg, builder)[1]})
