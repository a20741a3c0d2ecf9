"""synthetic_me: procedural faces with micro-expressions of exactly known motion.

Lets every part of deft-jax run, and be tested, without the licence-gated MER corpora.
Splits hold disjoint subjects ('test' is every fourth subject of each source); use
'train+test' for leave-one-subject-out.
"""

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from deft_jax.data import features, synthetic
from deft_jax.facs import catalogue


@dataclasses.dataclass
class SyntheticConfig(tfds.core.BuilderConfig):
  plan: tuple = ()
  num_frames: int = 8
  size: int = 64
  au_label_noise: float = 0.0  # share of clips whose written AU label is corrupted
  folds: float = 0.0  # skin folds' darkening (synthetic.Capture.folds); 0: none
  asynchrony: int = 0  # frames an AU may peak before the apex (synthetic.Capture.asynchrony)
  seed: int = 0


def _scaled(plan, subjects: int, clips_per_subject: int):
  """The MEGC2019 plan shrunk to a few subjects per source, class shares kept."""
  out = []
  total = sum(sum(s.counts.values()) for s in plan)
  for s in plan:
    n = subjects * clips_per_subject * sum(s.counts.values()) // total * len(plan)
    share = {k: max(1, round(n * v / sum(s.counts.values()))) for k, v in s.counts.items()}
    out.append(synthetic.SourcePlan(s.capture, subjects, share))
  return tuple(out)


class Builder(tfds.core.GeneratorBasedBuilder):
  """Synthetic micro-expression clips with frames, exact flow, AUs and labels."""

  VERSION = tfds.core.Version("1.3.0")
  RELEASE_NOTES = {"1.0.0": "First release.", "1.1.0": "Unilateral AUs (L...) move the subject's left: the image-right half.",
                   "1.2.0": "*_folds configs: FACS skin folds (shading the flow misses) and AUs that peak "
                            "before the apex; the other configs' clips are unchanged.",
                   "1.3.0": "Each record carries its face's 68 landmarks (the clips are unchanged)."}
  BUILDER_CONFIGS = [
      SyntheticConfig(name="small", description="24 subjects, ~260 clips, 64 px; builds in seconds.",
                      plan=_scaled(synthetic.MEGC2019, subjects=8, clips_per_subject=11)),
      SyntheticConfig(name="tiny", description="12 subjects, ~36 clips; for tests.",
                      plan=_scaled(synthetic.MEGC2019, subjects=4, clips_per_subject=3)),
      SyntheticConfig(name="megc2019", description="MEGC2019 composite structure: 68 subjects, 442 clips.",
                      plan=synthetic.MEGC2019),
      SyntheticConfig(name="megc2019_noisy_aus", description="megc2019 with 30% of AU labels corrupted.",
                      plan=synthetic.MEGC2019, au_label_noise=0.3),
      # Written AU labels corrupted in 30% of clips (aus_true keeps the truth): what Uni-MER's
      # dual constraint has to see through, at sizes for tests and quick runs.
      SyntheticConfig(name="tiny_noisy_aus", description="tiny with 30% of AU labels corrupted; for tests.",
                      plan=_scaled(synthetic.MEGC2019, subjects=4, clips_per_subject=3), au_label_noise=0.3),
      SyntheticConfig(name="small_noisy_aus", description="small with 30% of AU labels corrupted.",
                      plan=_scaled(synthetic.MEGC2019, subjects=8, clips_per_subject=11), au_label_noise=0.3),
      # Each expert gets something the others lack: skin folds (fine shading at the apex, which
      # flow misses and a half-resolution video tower blurs) and AUs peaking before the apex
      # (which onset->apex flow and keyframes see relaxed, the clip in full).
      SyntheticConfig(name="tiny_noisy_aus_folds", description="tiny_noisy_aus with skin folds and asynchronous AUs.",
                      plan=_scaled(synthetic.MEGC2019, subjects=4, clips_per_subject=3), au_label_noise=0.3,
                      folds=0.25, asynchrony=2),
      SyntheticConfig(name="small_noisy_aus_folds", description="small_noisy_aus with skin folds and asynchronous AUs.",
                      plan=_scaled(synthetic.MEGC2019, subjects=8, clips_per_subject=11), au_label_noise=0.3,
                      folds=0.25, asynchrony=2),
  ]
  DEFAULT_CONFIG_NAME = "small"

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.builder_config
    extra = {"aus_true": tfds.features.Tensor(shape=(catalogue.NUM_AUS,), dtype=np.uint8)}
    return self.dataset_info_from_configs(
        features=features.clip_features(cfg.num_frames, cfg.size, extra),
        homepage="https://github.com/deft-jax/deft-jax",
    )

  def _split_generators(self, dl_manager):
    cfg = self.builder_config
    clips = list(synthetic.plan_clips(cfg.plan, np.random.default_rng(cfg.seed)))
    clips = [(f"{subject}_c{i:04d}", i, subject, source, emo) for i, (subject, source, emo) in enumerate(clips)]
    held_out = lambda subject: int(subject.rsplit("_s", 1)[1]) % 4 == 3
    return {
        "train": self._generate_examples([c for c in clips if not held_out(c[2])]),
        "test": self._generate_examples([c for c in clips if held_out(c[2])]),
    }

  def _generate_examples(self, clips):
    cfg = self.builder_config
    subjects = {}
    for clip_id, index, subject, source, emotion in clips:
      if subject not in subjects:
        seed = np.random.SeedSequence([cfg.seed, 1, hash_name(subject)])
        subjects[subject] = synthetic.make_subject(subject, np.random.default_rng(seed))
      rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 2, index]))
      capture = dataclasses.replace(synthetic.SOURCES[source], folds=cfg.folds, asynchrony=cfg.asynchrony)
      record = synthetic.make_clip(subjects[subject], emotion, capture, rng,
                                   num_frames=cfg.num_frames, size=cfg.size, au_label_noise=cfg.au_label_noise)
      yield clip_id, {**record, "subject": subject, "clip_id": clip_id}


def hash_name(name: str) -> int:
  """A stable (unlike hash()) integer for a name."""
  return int.from_bytes(name.encode()[:16].ljust(16, b"\0"), "little") % (2 ** 63)
