"""The synthetic micro-expression builder: structure, determinism, and where the label lives."""

import collections
import dataclasses

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
  """frames[apex](p + flow(p)) == frames[onset](p) up to interpolation: the flow is exact.

  Skin folds are shading, which no flow can map; they are off here and tested below.
  """
  from scipy import ndimage
  rng = np.random.default_rng(1)
  capture = synthetic.Capture("clean", noise=0.0, blink_rate=0.0, folds=0.0, asynchrony=2)
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


def test_skin_folds_are_shading_that_grows_with_the_au_and_moves_nothing():
  rng_seed = int(np.random.default_rng(2).integers(2 ** 31))
  clips = {}
  for folds in (0.0, 0.25):
    rng = np.random.default_rng(rng_seed)
    capture = synthetic.Capture("clean", noise=0.0, blink_rate=0.0, folds=folds, asynchrony=2)
    clips[folds] = synthetic.make_clip(synthetic.make_subject("s", rng), "disgust", capture, rng, num_frames=8, size=64)
  plain, folded = clips[0.0], clips[0.25]
  np.testing.assert_array_equal(plain["flow"], folded["flow"])  # the geometry is the same
  change = np.abs(folded["frames"].astype(np.float32) - plain["frames"].astype(np.float32))
  shading, deepest = change.mean(axis=(1, 2, 3)), change.max(axis=(1, 2, 3))
  onset, apex = folded["onset_index"], folded["apex_index"]
  assert deepest[onset] == 0  # no fold before the expression starts
  assert deepest[apex] >= 8, deepest  # furrows of several grey levels (of 255) at the apex
  assert shading[apex] >= 0.75 * shading[onset:apex + 1].max(), shading  # near their deepest
  assert shading[-1] < shading[apex], shading  # and relaxing after it


def test_fold_furrows_run_across_the_motion_with_the_given_wavelength():
  subject = dataclasses.replace(synthetic.make_subject("s", np.random.default_rng(0)), centre=(0.0, 0.0))
  wavelength, spread, depth = 0.1, 0.2, 0.5
  direction = np.array([0.6, 0.8])
  fold = [(tuple(-spread * direction), tuple(direction), depth, spread)]  # one spread ahead: the origin
  k = np.arange(-2, 3)[:, None]
  crests = synthetic.fold_shading(subject, fold, (k + 0.5) * wavelength * direction, wavelength)
  troughs = synthetic.fold_shading(subject, fold, k * wavelength * direction, wavelength)
  across = np.array([-direction[1], direction[0]])
  line = synthetic.fold_shading(subject, fold, np.linspace(-0.3, 0.3, 61)[:, None] * across, wavelength)
  np.testing.assert_allclose(troughs, 0.0, atol=1e-9)  # furrows a wavelength apart along the motion
  assert (crests > 0.5 * depth * np.exp(-(2.5 * wavelength) ** 2 / (2 * spread ** 2))).all()
  assert crests.max() <= depth
  np.testing.assert_allclose(line, 0.0, atol=1e-9)  # and each runs straight across it


def test_later_aus_peak_at_or_before_the_apex():
  courses = synthetic.time_courses(8, onset=1, peaks=[5, 3, 5])
  assert courses[:, :2].max() == 0.0  # nothing moves before the onset
  np.testing.assert_allclose(courses[[0, 1, 2], [5, 3, 5]], 1.0)
  assert courses[1].argmax() == 3 and 0.2 <= courses[1, 5] < 1.0  # relaxing by the apex
  assert (courses >= 0).all() and (courses <= 1).all() and courses[:, -1].min() >= 0.2


def _clips(n_subjects=24, per_subject=6, size=32):
  rng = np.random.default_rng(3)
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


@pytest.mark.slow
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
