"""The synthetic micro-expression builder: structure, determinism, and where the label lives."""

import collections

import numpy as np
import pytest
from sklearn import linear_model, metrics, model_selection

from deft_jax.data import build, synthetic
from deft_jax.facs import catalogue


def test_megc2019_plan_has_the_composite_structure():
  clips = list(synthetic.plan_clips(synthetic.MEGC2019, np.random.default_rng(0)))
  assert len(clips) == 442
  assert len({s for s, _, _ in clips}) == 68
  per_source = collections.Counter(src for _, src, _ in clips)
  assert per_source == {"smic": 164, "casme2": 145, "samm": 133}
  from deft_jax.facs import emotions
  coarse = collections.Counter(emotions.coarse(e) for _, _, e in clips)
  assert coarse == {"negative": 250, "positive": 109, "surprise": 83}
  subjects = collections.Counter(s for s, _, _ in clips)
  assert {src: sum(1 for s in subjects if s.startswith(src)) for src in per_source} == {
      "smic": 16, "casme2": 24, "samm": 28}


def test_tiny_build_records(synthetic_tiny):
  b = synthetic_tiny
  sources = b.as_data_source()
  train_subjects = {sources["train"][i]["subject"] for i in range(len(sources["train"]))}
  test_subjects = {sources["test"][i]["subject"] for i in range(len(sources["test"]))}
  assert train_subjects and test_subjects and not train_subjects & test_subjects
  cfg = b.builder_config
  r = sources["train"][0]
  assert r["frames"].shape == (cfg.num_frames, cfg.size, cfg.size, 3) and r["frames"].dtype == np.uint8
  assert r["flow"].shape == (cfg.size, cfg.size, 2) and r["strain"].shape == (cfg.size, cfg.size)
  assert 0 <= r["onset_index"] < r["apex_index"] < r["offset_index"] < cfg.num_frames
  assert r["aus"].shape == (catalogue.NUM_AUS,) and r["aus"].sum() >= 1
  # The written string names exactly the AUs of the multi-hot vector.
  numbers = sorted(int(a.lstrip("L")) for a in r["au_string"].decode().split("+"))
  assert numbers == sorted(catalogue.AU_NUMBERS[i] for i in np.flatnonzero(r["aus"]))
  total = sum(sum(s.counts.values()) for s in cfg.plan)
  assert len(sources["train"]) + len(sources["test"]) == total
  # Micro-expressions move skin by a few pixels at most.
  mags = [np.linalg.norm(sources["train"][i]["flow"], axis=-1).max() for i in range(len(sources["train"]))]
  assert 0.3 < np.median(mags) and max(mags) < 4.0


def test_same_seed_same_records(tmp_path, synthetic_tiny):
  again = build.prepare("synthetic_me/tiny", tmp_path)
  a, b = synthetic_tiny.as_data_source()["test"], again.as_data_source()["test"]
  assert len(a) == len(b)
  ra = sorted((a[i] for i in range(len(a))), key=lambda r: r["clip_id"])
  rb = sorted((b[i] for i in range(len(b))), key=lambda r: r["clip_id"])
  for x, y in zip(ra, rb):
    np.testing.assert_array_equal(x["frames"], y["frames"])
    np.testing.assert_array_equal(x["flow"], y["flow"])
    assert x["au_string"] == y["au_string"] and x["emotion"] == y["emotion"]


@pytest.mark.parametrize("emotion", ["surprise", "happiness", "disgust", "anger"])
def test_exact_flow_maps_onset_onto_apex(emotion):
  """frames[apex](p + flow(p)) == frames[onset](p) up to interpolation: the flow is exact."""
  from scipy import ndimage
  rng = np.random.default_rng()
  capture = synthetic.Capture("clean", noise=0.0, blink_rate=0.0)
  clip = synthetic.make_clip(synthetic.make_subject("s", rng), emotion, capture, rng, num_frames=6, size=128)
  onset = clip["frames"][clip["onset_index"]].astype(np.float32)
  apex = clip["frames"][clip["apex_index"]].astype(np.float32)
  flow = clip["flow"]
  ys, xs = np.mgrid[:128, :128].astype(np.float32)
  warped = np.stack([ndimage.map_coordinates(apex[..., c], [ys + flow[..., 1], xs + flow[..., 0]], order=3)
                     for c in range(3)], -1)
  moving = np.linalg.norm(flow, axis=-1) > 1.0
  moving[:12], moving[-12:], moving[:, :12], moving[:, -12:] = False, False, False, False
  assert moving.sum() > 50
  before = np.abs(apex - onset)[moving].mean()
  after = np.abs(warped - onset)[moving].mean()
  assert after < 0.5 * before, (after, before)


def _clips(n_subjects=24, per_subject=6, size=32):
  rng = np.random.default_rng()
  plan = [synthetic.SourcePlan("casme2", n_subjects, {"negative": n_subjects * per_subject // 3,
                                                      "positive": n_subjects * per_subject // 3,
                                                      "surprise": n_subjects * per_subject // 3})]
  subjects, onsets, flows, labels = [], [], [], []
  people = {}
  from deft_jax.facs import emotions
  for name, source, emotion in synthetic.plan_clips(plan, rng):
    people.setdefault(name, synthetic.make_subject(name, rng))
    c = synthetic.make_clip(people[name], emotion, synthetic.SOURCES[source], rng, num_frames=4, size=size)
    subjects.append(name)
    onsets.append(c["frames"][c["onset_index"]].reshape(-1) / 255.0)
    flows.append(c["flow"].reshape(-1))
    labels.append(emotions.label(emotion, "composite"))
  return np.array(subjects), np.array(onsets), np.array(flows), np.array(labels)


def test_appearance_alone_is_at_chance_and_motion_is_not():
  subjects, onsets, flows, labels = _clips()
  cv = model_selection.GroupKFold(n_splits=4)

  def uar(x):
    clf = linear_model.LogisticRegression(C=0.1, max_iter=2000)
    pred = model_selection.cross_val_predict(clf, x, labels, groups=subjects, cv=cv)
    return metrics.balanced_accuracy_score(labels, pred)

  appearance, motion = uar(onsets), uar(flows)
  # Three balanced classes: chance is 1/3; 144 clips put its 2-sigma band near +-0.08.
  assert appearance < 0.47, appearance
  assert motion > 0.6, motion
