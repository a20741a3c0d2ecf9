"""uni_mer: instruction data whose every statement about motion is backed by labels AND flow.

For each clip of a source dataset (any clip builder of deft_jax.data.build, read through
`build.prepare`), the builder
  1. measures the onset->apex flow: per-AU amplitudes and per-region motion against the
     clip's noise level (deft_jax.facs.evidence);
  2. applies the dual constraint (deft_jax.facs.dual_constraint): labelled AUs whose motion
     is there are confirmed, the others flagged; clear unlabelled motion is added as an
     observed motion without an AU name;
  3. writes instruction / answer pairs for several tasks (deft_jax.data.answers.TASKS), every
     answer a (C, E, R) answer whose cues are the confirmed (and observed) motions only.
Records keep every field of the source record, so the same data trains with plain label
answers too (config.data.answers = "labels"). Splits are the source's. The agreement report
is printed at the end and kept in metadata.json (`info.metadata["uni_mer_report"]`).

Which flow is measured: the source's stored flow. synthetic_me stores the exact
displacement it rendered; the real builders store onset->apex TV-L1 (deft_jax.flow.tvl1) on
the aligned crops. The *_tvl1 configs recompute TV-L1 on synthetic frames and store it in
place of the exact flow, to show the constraint holds on measured flow.
"""

import dataclasses
import zlib

import numpy as np
import tensorflow_datasets as tfds

from data_builders.uni_mer import report as report_lib
from deft_jax.data import answers, build, clip_flow, clip_frames, pipeline
from deft_jax.facs import catalogue, dual_constraint, evidence, regions


@dataclasses.dataclass
class UniMerConfig(tfds.core.BuilderConfig):
  source: str = ""  # "builder" or "builder/config" of deft_jax.data.build
  flow: str = "stored"  # "stored" or "tvl1" (recomputed onset->apex from the frames)
  noise_floor: float = 0.1  # px: the least noise level a clip is credited with
  thresholds: dual_constraint.Thresholds = dual_constraint.Thresholds()
  seed: int = 0


def _configs():
  out = []
  for name in ("tiny", "small", "megc2019", "tiny_noisy_aus", "small_noisy_aus", "megc2019_noisy_aus",
               "tiny_noisy_aus_folds", "small_noisy_aus_folds"):
    out.append(UniMerConfig(name=f"synthetic_{name}", source=f"synthetic_me/{name}",
                            description=f"Uni-MER over synthetic_me/{name} (exact flow)."))
  # TV-L1 is a smoothed estimate: peaks of faint AUs come out lower than they are, so these
  # confirm from 2 noise levels (0.2 px at the floor) instead of 3.
  for name in ("tiny_noisy_aus", "small_noisy_aus", "tiny_noisy_aus_folds", "small_noisy_aus_folds"):
    out.append(UniMerConfig(name=f"synthetic_{name}_tvl1", source=f"synthetic_me/{name}", flow="tvl1",
                            thresholds=dual_constraint.Thresholds(sigmas=2.0),
                            description=f"Uni-MER over synthetic_me/{name}, measured on TV-L1 flow."))
  for name in ("casme2", "samm", "smic", "casme3", "megc2019"):
    out.append(UniMerConfig(name=name, source=name, description=f"Uni-MER over {name} (its default config)."))
  return out


class Builder(tfds.core.GeneratorBasedBuilder):
  """Source clips + dual-constraint verdicts + instruction/answer pairs."""

  VERSION = tfds.core.Version("1.3.0")
  RELEASE_NOTES = {"1.0.0": "First release.", "1.1.0": "Cue sides name the subject's side (FACS), not the image half.",
                   "1.2.0": "Configs over synthetic_me 1.2.0's *_folds sets; the others unchanged.",
                   "1.3.0": "Flow evidence read in regions placed by each clip's 68 landmarks."}
  BUILDER_CONFIGS = _configs()
  DEFAULT_CONFIG_NAME = "synthetic_small"
  MANUAL_DOWNLOAD_INSTRUCTIONS = ("Only for a real source that is not built yet: that dataset's own "
                                  "manual_dir (see its builder).")

  def _source(self, manual_dir=None):
    return build.builder(self.builder_config.source, self.data_dir_root, manual_dir)

  def _info(self) -> tfds.core.DatasetInfo:
    n, r = catalogue.NUM_AUS, len(catalogue.REGIONS)
    extra = {
        "aus_confirmed": tfds.features.Tensor(shape=(n,), dtype=np.uint8),
        "aus_flagged": tfds.features.Tensor(shape=(n,), dtype=np.uint8),
        "aus_added": tfds.features.Tensor(shape=(n,), dtype=np.uint8),
        "au_amplitude": tfds.features.Tensor(shape=(n, 2), dtype=np.float32),
        "flow_noise": np.float32,
        "region_motion": tfds.features.Tensor(shape=(r, len(evidence.REGION_STATS)), dtype=np.float32),
        "tasks": tfds.features.Sequence(tfds.features.Text()),
        "instructions": tfds.features.Sequence(tfds.features.Text()),
        "answers": tfds.features.Sequence(tfds.features.Text()),
    }
    source = dict(self._source().info.features.items())
    return self.dataset_info_from_configs(features=tfds.features.FeaturesDict({**source, **extra}),
                                          metadata=tfds.core.MetadataDict())

  def _split_generators(self, dl_manager):
    try:
      manual_dir = dl_manager.manual_dir
    except (AssertionError, ValueError):  # none given: fine once the source is built
      manual_dir = None
    cfg = self.builder_config
    if cfg.flow not in ("stored", "tvl1"):
      raise ValueError(f"uni_mer/{cfg.name}: flow must be 'stored' or 'tvl1', got {cfg.flow!r}")
    source = build.prepare(cfg.source, self.data_dir_root, manual_dir)
    report = report_lib.Report(f"uni_mer/{cfg.name}")
    splits = source.as_data_source()
    return {split: self._generate_examples(records, report, last=i == len(splits) - 1)
            for i, (split, records) in enumerate(sorted(splits.items()))}

  def _generate_examples(self, records, report, last):
    cfg = self.builder_config
    measurers = {}
    for i in range(len(records)):
      record = dict(records[i])
      if cfg.flow == "tvl1":
        frames = record["frames"]
        record["flow"], record["strain"] = clip_flow.onset_apex_flow(
            clip_frames.gray(frames[record["onset_index"]]), clip_frames.gray(frames[record["apex_index"]]))
      # Evidence is read in the regions and at the AU sites placed by the clip's own landmarks.
      landmarks = np.asarray(record.get("landmarks", regions.CANONICAL_68), np.float32)
      key = (record["flow"].shape[0], landmarks.tobytes())
      if key not in measurers:
        measurers[key] = evidence.Measurer(key[0], landmarks=landmarks, noise_floor=cfg.noise_floor)
      m = measurers[key](record["flow"], record["strain"])
      verdict = dual_constraint.check(record["aus"], m, cfg.thresholds)
      clip_id = pipeline.as_text(record["clip_id"])
      rng = np.random.default_rng([cfg.seed, zlib.crc32(clip_id.encode())])
      pairs = answers.task_pairs(answers.measured_cues(verdict, m), pipeline.as_text(record["emotion"]), rng,
                                 absent_aus=tuple(catalogue.AU_NUMBERS[j] for j in np.flatnonzero(verdict.flagged)))
      report.add(pipeline.as_text(record["source"]), record["aus"], verdict, record.get("aus_true"))
      yield clip_id, {
          **{k: pipeline.as_text(v) if isinstance(v, bytes) else v for k, v in record.items()},
          "aus_confirmed": verdict.confirmed.astype(np.uint8),
          "aus_flagged": verdict.flagged.astype(np.uint8),
          "aus_added": verdict.added.astype(np.uint8),
          "au_amplitude": m.amplitude.astype(np.float32),
          "flow_noise": np.float32(m.noise),
          "region_motion": np.stack([m.regions[r].as_array() for r in catalogue.REGIONS]),
          "tasks": [t for t, _, _ in pairs],
          "instructions": [q for _, q, _ in pairs],
          "answers": [answers.format_answer(a) for _, _, a in pairs],
      }
    self.info.metadata["uni_mer_report"] = report.as_dict()
    if last:
      print(report.summary(), flush=True)

