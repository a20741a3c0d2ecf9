"""The fold program: folds as a vmapped parameter axis, masking, equality with folds trained
alone, pooled scores against scikit-learn, the peers, and the whole job on a fake composite."""

import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn import metrics as sk

from deft_jax.eval import fold_scores, log as log_lib
from deft_jax.models import convs
from deft_jax.models.peers import offapexnet, ststnet
from deft_jax.train import fold_models, folds, losses, sweep

SUBJECTS = np.array(["a", "a", "b", "b", "b", "c", "c", "d", "e", "e"])
LABELS = np.array([0, 1, 0, 2, 1, 0, 2, 1, 0, 2], np.int32)


def test_loso_plan_holds_each_subject_out():
  p = folds.plan(SUBJECTS)
  assert p.names == ("a", "b", "c", "d", "e")
  for name, train, test in zip(p.names, p.train, p.test):
    np.testing.assert_array_equal(test, SUBJECTS == name)
    np.testing.assert_array_equal(train, SUBJECTS != name)
  np.testing.assert_array_equal(p.scored, p.test)
  assert p.test.sum(0).tolist() == [1] * len(SUBJECTS)  # every clip is tested exactly once


def test_validation_plan_scores_training_subjects_only():
  p = folds.plan(SUBJECTS, mode="validation", val_groups=2)
  for train, test, scored in zip(p.train, p.test, p.scored):
    assert scored.any() and not (scored & test).any() and not (scored & train).any()
    assert not (train & test).any()
    assert set(SUBJECTS[scored]).isdisjoint(SUBJECTS[train])  # whole subjects


def test_grouped_folds_and_subject_errors():
  p = folds.plan(SUBJECTS, num_folds=2, seed=3)
  assert p.num_folds == 2 and p.test.sum(0).tolist() == [1] * len(SUBJECTS)
  with pytest.raises(ValueError, match=r"subject\(s\) \['zz'\] have no clips"):
    folds.plan(SUBJECTS, subject_list=("zz",))
  assert folds.plan(SUBJECTS, subject_list=("c",)).names == ("c",)


@pytest.mark.parametrize("mode", folds.MODES)
def test_train_share_trains_each_fold_on_a_seeded_share_of_its_training_subjects(mode):
  subjects = np.repeat([f"s{i:02d}" for i in range(20)], 3)
  full = folds.plan(subjects, mode, num_folds=4, val_groups=2, seed=5)
  half = folds.plan(subjects, mode, num_folds=4, val_groups=2, seed=5, train_share=0.5)
  np.testing.assert_array_equal(half.test, full.test)
  np.testing.assert_array_equal(half.scored, full.scored)  # the same clips scored
  for kept, every in zip(half.train, full.train):
    assert not (kept & ~every).any()  # only the fold's own training clips
    names = set(subjects[kept])
    assert len(names) == round(0.5 * len(set(subjects[every])))
    np.testing.assert_array_equal(kept, every & np.isin(subjects, sorted(names)))  # whole subjects
  one = folds.plan(subjects, mode, num_folds=4, val_groups=2, seed=5, train_share=0.01)
  assert [len(set(subjects[row])) for row in one.train] == [1] * 4  # at least one subject
  for bad in (0.0, 1.5):
    with pytest.raises(ValueError, match=f"folds.train_share={bad}: needs a share in"):
      folds.plan(subjects, mode, train_share=bad)


def test_sampling_weights_are_zero_on_held_out_clips_and_balance_classes():
  p = folds.plan(SUBJECTS)
  w = folds.sampling_weights(p.train, LABELS, "sample")
  assert (w[p.test] == 0).all()
  np.testing.assert_allclose(w.sum(1), 1, rtol=1e-6)
  for row, train in zip(w, p.train):
    per_class = [row[LABELS == c].sum() for c in range(3) if (train & (LABELS == c)).any()]
    np.testing.assert_allclose(per_class, per_class[0], rtol=1e-5)  # each present class equally likely
  plain = folds.sampling_weights(p.train, LABELS, "none")
  np.testing.assert_allclose(plain[0][p.train[0]], 1 / p.train[0].sum(), rtol=1e-6)


def test_corpus_balance_keeps_each_corpus_share_and_balances_its_classes():
  corpora = np.array(["x", "y", "x", "x", "y", "x", "y", "y", "x", "x"])
  p = folds.plan(SUBJECTS)
  w = folds.sampling_weights(p.train, LABELS, "corpus", corpora)
  assert (w[p.test] == 0).all()
  for row, train in zip(w, p.train):
    for corpus in ("x", "y"):
      in_corpus = train & (corpora == corpus)
      assert row[corpora == corpus].sum() == pytest.approx(in_corpus.sum() / train.sum(), rel=1e-5)
      per_class = [row[in_corpus & (LABELS == c)].sum() for c in range(3) if (in_corpus & (LABELS == c)).any()]
      np.testing.assert_allclose(per_class, per_class[0], rtol=1e-5)
  # Unlike "sample", which balances the classes over both corpora together:
  assert not np.allclose(w, folds.sampling_weights(p.train, LABELS, "sample"), atol=1e-3)
  with pytest.raises(ValueError, match="needs each clip's corpus"):
    folds.sampling_weights(p.train, LABELS, "corpus")


class _Table(nn.Module):
  """One free logit vector per clip: its row only moves when that clip is trained on."""
  n: int

  @nn.compact
  def __call__(self, index):
    return self.param("table", nn.initializers.normal(1.0), (self.n, 3))[index]


def _table_spec(n):
  module = _Table(n)

  def loss(variables, batch, rng):
    ce = optax.softmax_cross_entropy_with_integer_labels(module.apply(variables, batch["index"]), batch["label"])
    return ce.mean(), ({}, {})

  return fold_models.Spec("table", lambda rng: dict(module.init(rng, jnp.zeros((1,), jnp.int32))),
                          loss, lambda v, b: module.apply(v, b["index"]))


def test_a_fold_never_trains_on_its_own_test_subject():
  n = len(SUBJECTS)
  p = folds.plan(SUBJECTS)
  data = {"index": np.arange(n, dtype=np.int32), "label": LABELS,
          "flow": np.zeros((n, 4, 4, 3), np.float32), "face": np.zeros((n, 4, 4, 3), np.uint8)}
  idx, mask = folds.scored_indices(p.scored)
  spec = _table_spec(n)
  schedule = folds.Schedule(batch_size=4, steps_per_epoch=5, epochs=3)
  logits, _ = folds.train_folds(spec, optax.sgd(0.5), data, folds.sampling_weights(p.train, LABELS, "none"), idx,
                                schedule, folds.Augment(flip=False), seed=0)
  # Untrained logits of each fold's test clips, from the same per-fold init.
  keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.fold_in(jax.random.key(0), i), 0))(jnp.arange(p.num_folds))
  init = np.asarray(jax.vmap(spec.init)(keys)["params"]["table"])
  for f in range(p.num_folds):
    test = idx[f][mask[f]]
    for e in range(schedule.epochs):  # test rows never move
      np.testing.assert_array_equal(logits[e, f][mask[f]], init[f][test])
  assert not np.allclose(init, 0)


class _Bias(nn.Module):
  """One logit vector shared by every clip."""

  @nn.compact
  def __call__(self, index):
    return jnp.broadcast_to(self.param("bias", nn.initializers.normal(1.0), (3,)), (index.shape[0], 3))


def test_ema_scores_with_the_moving_average_of_the_params():
  """A loss whose gradient is a constant g moves the params by -lr g at every step, so the moving
  average that scores the clips has a closed form: ema_t = d ema_(t-1) + (1 - d) p_t, ema_0 = p_0."""
  module, g, lr, decay, steps, epochs = _Bias(), jnp.array([1.0, -2.0, 0.5]), 0.1, 0.8, 3, 2
  spec = fold_models.Spec("bias", lambda rng: dict(module.init(rng, jnp.zeros((1,), jnp.int32))),
                          lambda v, b, rng: (jnp.sum(v["params"]["bias"] * g), ({}, {})),
                          lambda v, b: module.apply(v, b["index"]))
  n = len(SUBJECTS)
  p = folds.plan(SUBJECTS)
  data = {"index": np.arange(n, dtype=np.int32), "label": LABELS, "flow": np.zeros((n, 4, 4, 3), np.float32)}
  idx, mask = folds.scored_indices(p.scored)
  schedule = folds.Schedule(batch_size=2, steps_per_epoch=steps, epochs=epochs, ema=decay)
  logits, _ = folds.train_folds(spec, optax.sgd(lr), data, folds.sampling_weights(p.train, LABELS, "none"), idx,
                                schedule, folds.Augment(flip=False), seed=4)
  keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.fold_in(jax.random.key(4), i), 0))(jnp.arange(p.num_folds))
  for f, p0 in enumerate(np.asarray(jax.vmap(spec.init)(keys)["params"]["bias"])):
    ema = p0
    for t in range(1, steps * epochs + 1):
      ema = decay * ema + (1 - decay) * (p0 - t * lr * np.asarray(g))
      if t % steps == 0:
        np.testing.assert_allclose(logits[t // steps - 1, f][mask[f]], np.broadcast_to(ema, (mask[f].sum(), 3)),
                                   rtol=1e-5, atol=1e-6)
    assert not np.allclose(ema, p0 - steps * epochs * lr * np.asarray(g), atol=1e-2)  # not the last step's params


def _peer_data(n=24, seed=0):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 3, n).astype(np.int32)
  flow = rng.normal(size=(n, 28, 28, 3)).astype(np.float32) + labels[:, None, None, None]
  return {"flow": flow, "face": rng.integers(0, 255, (n, 8, 8, 3), dtype=np.uint8), "label": labels}


@pytest.mark.slow
def test_folds_in_one_program_equal_folds_trained_alone():
  """The vmapped, sharded program (3 folds padded over 8 devices) against each fold alone."""
  data = _peer_data()
  subjects = np.repeat(np.array(["s0", "s1", "s2"]), 8)
  p = folds.plan(subjects)
  spec = fold_models.peer("ststnet", 3, data)
  weights = folds.sampling_weights(p.train, data["label"], "sample")
  idx, _ = folds.scored_indices(p.scored)
  schedule = folds.Schedule(batch_size=8, steps_per_epoch=3, epochs=2)
  augment = folds.Augment(flip=True, shift=1.0, scale=0.05)
  together, losses = folds.train_folds(spec, optax.adam(1e-2), data, weights, idx, schedule, augment, seed=7)
  assert together.shape == (2, 3, 8, 3) and losses.shape == (2, 3)
  one_device = folds.fold_mesh(jax.devices()[:1])
  for f in range(3):
    alone, _ = folds.train_folds(spec, optax.adam(1e-2), data, weights[f:f + 1], idx[f:f + 1], schedule, augment,
                                 seed=7, mesh=one_device, fold_ids=[f])
    np.testing.assert_allclose(alone[:, 0], together[:, f], rtol=1e-4, atol=1e-4)
  assert not np.allclose(together[-1, 0], together[-1, 1], atol=1e-3)  # folds do differ


def test_flip_negates_u_and_mirrors():
  rng = np.random.default_rng(0)
  batch = {"flow": jnp.asarray(rng.normal(size=(64, 6, 6, 3)), jnp.float32),
           "face": jnp.asarray(rng.integers(0, 255, (64, 6, 6, 3)), jnp.uint8)}
  out = folds.Augment(flip=True)(batch, jax.random.key(0))
  flow, new = np.asarray(batch["flow"]), np.asarray(out["flow"])
  flipped = ~np.isclose(new, flow).all(axis=(1, 2, 3))
  assert 10 < flipped.sum() < 54
  np.testing.assert_array_equal(new[flipped][..., 0], -flow[flipped][:, :, ::-1, 0])
  np.testing.assert_array_equal(new[flipped][..., 1:], flow[flipped][:, :, ::-1, 1:])
  np.testing.assert_array_equal(np.asarray(out["face"])[flipped], np.asarray(batch["face"])[flipped][:, :, ::-1])


def test_mixup_mixes_clips_and_their_emotion_targets():
  """Each clip becomes w * itself + (1 - w) * another clip of the batch (w >= 1/2, drawn from
  Beta(a, a)), the face alike; the emotion loss reads the same mixture of the two labels; the
  flips are the draws they are without mixing."""
  n, rng = 256, np.random.default_rng(1)
  labels = rng.integers(0, 3, n)
  batch = {"flow": jnp.asarray(rng.normal(size=(n, 5, 5, 3)), jnp.float32),
           "face": jnp.asarray(rng.integers(0, 255, (n, 5, 5, 3)), jnp.uint8), "label": jnp.asarray(labels)}
  key = jax.random.key(3)
  plain = folds.Augment(flip=True)(batch, key)
  out = folds.Augment(flip=True, mixup=0.4)(batch, key)
  w = np.asarray(out["mix_weight"])
  assert (w >= 0.5).all() and (w <= 1).all() and 0.6 < w.mean() < 0.95 and w.std() > 0.05
  flow, mixed = np.asarray(plain["flow"]), np.asarray(out["flow"])
  # the partner of each clip: the one whose plain (flipped) flow makes the mixture; it can be
  # told only where the partner's share is visible
  errors = np.abs(mixed[:, None] - w[:, None, None, None, None] * flow[:, None]
                  - (1 - w[:, None, None, None, None]) * flow[None]).max(axis=(2, 3, 4))  # (n, n)
  other = errors.argmin(1)
  assert errors.min(1).max() < 1e-5
  seen = 1 - w > 0.02
  assert seen.sum() > n // 2 and len(set(other[seen])) == seen.sum()  # distinct partners: a permutation
  np.testing.assert_array_equal(np.asarray(out["mix_label"])[seen], labels[other][seen])
  face = np.asarray(plain["face"], np.float32)
  wf = w[:, None, None, None]
  np.testing.assert_allclose(np.asarray(out["face"], np.float32)[seen],
                             np.clip(np.round(wf * face + (1 - wf) * face[other]), 0, 255)[seen], atol=1)
  logits = jnp.asarray(rng.normal(size=(n, 3)), jnp.float32)
  logp = np.asarray(jax.nn.log_softmax(logits))
  mix_label = np.asarray(out["mix_label"])
  expected = -(w * logp[np.arange(n), labels] + (1 - w) * logp[np.arange(n), mix_label]).mean()
  np.testing.assert_allclose(float(losses.emotion_loss(logits, out, 0.0)), expected, rtol=1e-5)
  mixed_targets = w[:, None] * np.eye(3)[labels] + (1 - w[:, None]) * np.eye(3)[mix_label]
  smoothed = -((0.9 * mixed_targets + 0.1 / 3) * logp).sum(1).mean()  # label smoothing on the mixture
  np.testing.assert_allclose(float(losses.emotion_loss(logits, out, 0.1)), smoothed, rtol=1e-5)
  assert "mix_weight" not in plain and float(losses.emotion_loss(logits, plain, 0.0)) == pytest.approx(
      -logp[np.arange(n), labels].mean(), rel=1e-5)


def test_rotation_turns_the_image_like_scipy_and_the_vectors_with_it():
  """The grid against scipy.ndimage.rotate (bilinear, zero outside, same centre) on a drawn
  image; a lone vector (u, v) = (1, 0) turned a quarter lands where the pixel went, as (0, 1)."""
  from scipy import ndimage
  rng = np.random.default_rng(5)
  image = rng.normal(size=(11, 11, 2)).astype(np.float32)
  degrees = float(rng.uniform(5, 30))
  out = np.asarray(folds._rotate(jnp.asarray(image), jnp.deg2rad(degrees)))
  # scipy turns the other way in (row, col): its -angle is our +angle (x towards y)
  expected = ndimage.rotate(image, -degrees, axes=(1, 0), reshape=False, order=1, mode="grid-constant", cval=0.0)
  np.testing.assert_allclose(out, expected, atol=1e-4)
  lone = np.zeros((9, 9, 3), np.float32)
  lone[4, 7] = (1.0, 0.0, 0.5)  # 3 px right of the centre, pointing right
  turned = np.array(folds._rotate(jnp.asarray(lone), jnp.pi / 2, vectors=True))
  # x towards y by 90 degrees: right of centre goes below it, and "right" becomes "down"
  np.testing.assert_allclose(turned[7, 4], (0.0, 1.0, 0.5), atol=1e-5)
  turned[7, 4] = 0.0
  np.testing.assert_allclose(turned, 0.0, atol=1e-5)


def test_rotation_augment_draws_angles_within_its_range():
  """Uniform rightward flow turned by each clip's angle: the angle read back from (u, v) at
  the centre lies within +-rotate and spreads over it; the shifts' draws are those without it."""
  n = 200
  flow = jnp.broadcast_to(jnp.array([1.0, 0.0, 0.0]), (n, 15, 15, 3))
  out = np.asarray(folds.Augment(flip=False, rotate=20.0)({"flow": flow}, jax.random.key(1))["flow"])
  angles = np.rad2deg(np.arctan2(out[:, 7, 7, 1], out[:, 7, 7, 0]))
  np.testing.assert_allclose(np.hypot(out[:, 7, 7, 0], out[:, 7, 7, 1]), 1.0, atol=1e-5)
  assert np.abs(angles).max() <= 20.0 + 1e-3 and angles.min() < -15 and angles.max() > 15
  drawn = np.random.default_rng(2).normal(size=(8, 15, 15, 3)).astype(np.float32)
  plain = folds.Augment(flip=True, shift=1.0, scale=0.05)({"flow": jnp.asarray(drawn)}, jax.random.key(4))
  turned = folds.Augment(flip=True, shift=1.0, scale=0.05, rotate=0.001)({"flow": jnp.asarray(drawn)}, jax.random.key(4))
  np.testing.assert_allclose(np.asarray(turned["flow"]), np.asarray(plain["flow"]), atol=1e-3)


def test_erase_fills_one_square_with_the_clip_median_in_about_half_the_clips():
  n, size, side = 300, 12, 4
  rng = np.random.default_rng(6)
  flow = rng.normal(size=(n, size, size, 3)).astype(np.float32)
  out = np.asarray(folds.Augment(flip=False, erase=float(side))({"flow": jnp.asarray(flow)}, jax.random.key(2))["flow"])
  changed = (out != flow).any(-1)  # (n, size, size)
  erased = changed.any((1, 2))
  assert 0.4 * n < erased.sum() < 0.6 * n
  corners = set()
  for i in np.flatnonzero(erased):
    rows, cols = np.flatnonzero(changed[i].any(1)), np.flatnonzero(changed[i].any(0))
    assert len(rows) == len(cols) == side and np.ptp(rows) == np.ptp(cols) == side - 1
    assert changed[i].sum() == side * side
    np.testing.assert_allclose(out[i, rows[0], cols[0]], np.median(flow[i], axis=(0, 1)), rtol=1e-6)
    corners.add((rows[0], cols[0]))
  assert len(corners) > 30  # the square goes anywhere
  np.testing.assert_array_equal(out[~erased], flow[~erased])


def test_noise_adds_fresh_gaussian_noise_of_its_std_to_the_flow_alone():
  rng = np.random.default_rng()
  flow = rng.uniform(-1, 1, size=(64, 12, 12, 3)).astype(np.float32)
  face = rng.integers(0, 256, size=(64, 24, 24, 3)).astype(np.uint8)
  augment = folds.Augment(flip=False, noise=0.05)
  out = augment({"flow": jnp.asarray(flow), "face": jnp.asarray(face)}, jax.random.key(int(rng.integers(1 << 30))))
  added = np.asarray(out["flow"]) - flow
  assert abs(added.std() - 0.05) < 0.002 and abs(added.mean()) < 0.002
  assert abs(np.corrcoef(added[..., 0].ravel(), added[..., 1].ravel())[0, 1]) < 0.03  # independent draws
  np.testing.assert_array_equal(np.asarray(out["face"]), face)
  plain = folds.Augment(flip=False)({"flow": jnp.asarray(flow)}, jax.random.key(0))["flow"]
  np.testing.assert_array_equal(np.asarray(plain), flow)


def _moved(flow, dy, dx):
  """flow moved by whole pixels, zero where nothing moved in (numpy, the reference)."""
  out = np.zeros_like(flow)
  h, w = flow.shape[1:3]
  out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
      flow[:, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
  return out


@pytest.mark.parametrize("flip, shift", [(False, 0.0), (True, 0.0), (False, 1.0), (True, 2.0)])
def test_scored_logits_are_the_mean_over_test_views(flip, shift):
  """test_flip: the clip and its mirror (u negated); test_shift s: also the clip moved s pixels
  up, down, left and right (and their mirrors), each view's logits averaged."""
  data = _peer_data(n=6)
  spec = fold_models.peer("ststnet", 3, data)
  variables = spec.init(jax.random.key(3))
  tx = optax.set_to_zero()
  idx = np.arange(6, dtype=np.int32)
  weights = np.full(6, 1 / 6, np.float32)
  # One step (batch statistics move, parameters do not).
  epoch = folds.make_epoch(spec, tx, folds.Augment(flip=False), folds.Schedule(2, 1, 1, flip, shift))
  trained, _, _, _, out = epoch(variables, tx.init(variables["params"]), None, data, weights, idx, jax.random.key(0))
  flow = np.asarray(data["flow"])
  s = int(shift)
  views = [flow] + ([_moved(flow, dy, dx) for dy, dx in ((s, 0), (-s, 0), (0, s), (0, -s))] if s else [])
  views += [v[:, :, ::-1] * np.array([-1.0, 1.0, 1.0], np.float32) for v in views] if flip else []
  expected = np.mean([np.asarray(spec.logits(trained, {**data, "flow": jnp.asarray(v)})) for v in views], 0)
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
  if flip or shift:  # the views do change the scores
    assert not np.allclose(out, np.asarray(spec.logits(trained, data)), atol=1e-4)


@pytest.mark.slow
def test_ststnet_has_the_papers_shape_and_size():
  module = ststnet.STSTNet()
  variables = module.init(jax.random.key(0), jnp.zeros((1, 28, 28, 3)))
  params = variables["params"]
  assert sum(x.size for x in jax.tree.leaves(params)) == 1683  # 3x3 convs 84 + 140 + 224, BN 32, dense 1203
  assert params["conv2"]["kernel"].shape == (3, 3, 3, 8) and params["fc"]["kernel"].shape == (5 * 5 * 16, 3)
  assert module.apply(variables, jnp.zeros((5, 28, 28, 3))).shape == (5, 3)
  big = ststnet.STSTNet(kernels=(3, 5, 7))
  assert big.init(jax.random.key(0), jnp.zeros((1, 28, 28, 3)))["params"]["conv2"]["kernel"].shape == (7, 7, 3, 8)
  o = offapexnet.OffApexNet()
  v = o.init(jax.random.key(0), jnp.zeros((1, 28, 28, 3)))
  assert o.apply(v, jnp.zeros((2, 28, 28, 3))).shape == (2, 3)
  assert v["params"]["fc1"]["kernel"].shape == (2 * 7 * 7 * 16, 1024)
  # The same network in flax's own layers, on the same parameters (the paper's 5 x 5 "SAME" convs).
  flow = jax.random.normal(jax.random.key(1), (2, 28, 28, 3))
  p, streams = v["params"], []
  for i in range(2):
    x = flow[..., i:i + 1]
    for layer in ("conv1", "conv2"):
      conv = nn.Conv(p[f"s{i}_{layer}"]["kernel"].shape[-1], (5, 5), padding="SAME")
      x = nn.max_pool(nn.relu(conv.apply({"params": p[f"s{i}_{layer}"]}, x)), (2, 2), (2, 2))
    streams.append(x.reshape(2, -1))
  hidden = nn.relu(nn.Dense(1024).apply({"params": p["fc1"]}, jnp.concatenate(streams, -1)))
  np.testing.assert_allclose(o.apply(v, flow), nn.Dense(3).apply({"params": p["fc2"]}, hidden), rtol=1e-4, atol=1e-5)


def test_pooled_honest_and_optimistic_scores_match_scikit_learn():
  rng = np.random.default_rng(1)
  e, f, m, c = 4, 6, 5, 3
  probs = fold_scores.softmax(rng.normal(size=(e, f, m, c)))
  idx = rng.permutation(f * m).reshape(f, m)
  mask = rng.random((f, m)) < 0.8
  mask[:, 0] = True
  labels = rng.integers(0, c, f * m)
  datasets = np.where(np.arange(f * m) % 2, "smic", "samm")
  honest, optimistic, best, rows = fold_scores.score(probs, idx, mask, labels, datasets, c)
  truth, pred = labels[idx][mask], probs[-1].argmax(-1)[mask]
  assert honest["full"]["uf1"] == pytest.approx(sk.f1_score(truth, pred, average="macro"))
  assert honest["full"]["uar"] == pytest.approx(sk.recall_score(truth, pred, average="macro"))
  part = datasets[idx][mask] == "smic"
  assert honest["per_dataset"]["smic"]["uf1"] == pytest.approx(
      sk.f1_score(truth[part], pred[part], average="macro", labels=sorted(set(truth[part]) | set(pred[part]))))
  for fold in range(f):  # the optimistic epoch is the fold's own best on its test clips
    correct = [(probs[k, fold].argmax(-1) == labels[idx[fold]])[mask[fold]].sum() for k in range(e)]
    assert best[fold] == int(np.argmax(correct))
  chosen = np.stack([probs[best[k], k] for k in range(f)]).argmax(-1)[mask]
  assert optimistic["full"]["uf1"] == pytest.approx(sk.f1_score(truth, chosen, average="macro"))
  np.testing.assert_array_equal(rows["prediction"], pred)
  averaged, _, _, rows = fold_scores.score(probs, idx, mask, labels, datasets, c, average_epochs=3)
  pred = probs[-3:].mean(0).argmax(-1)[mask]  # a fixed snapshot ensemble of the last 3 epochs
  assert averaged["full"]["uf1"] == pytest.approx(sk.f1_score(truth, pred, average="macro"))
  np.testing.assert_array_equal(rows["prediction"], pred)
  with pytest.raises(ValueError, match="average_epochs=5"):
    fold_scores.score(probs, idx, mask, labels, datasets, c, average_epochs=5)


@pytest.mark.parametrize("by_corpus", [True, False])
def test_prior_shift_is_bayes_rule_to_the_training_class_mix(by_corpus):
  """Each scored clip's probabilities times the class shares (+1 each) of its fold's training
  clips of its corpus (or of all), renormalised; counted here clip by clip."""
  rng = np.random.default_rng(8)
  e, f, m, c, n = 2, 4, 5, 3, 60
  labels = rng.integers(0, c, n)
  corpora = rng.choice(["casme2", "samm", "smic"], n)
  train = rng.random((f, n)) < 0.7
  idx = rng.integers(0, n, (f, m))
  probs = fold_scores.softmax(rng.normal(size=(e, f, m, c)))
  groups = corpora if by_corpus else np.zeros(n)
  out = fold_scores.prior_shift(probs, idx, train, labels, groups)
  for fold in range(f):
    for j, clip in enumerate(idx[fold]):
      mates = train[fold] & (groups == groups[clip])
      prior = np.array([(labels[mates] == k).sum() + 1 for k in range(c)], float)
      expected = probs[:, fold, j] * prior
      np.testing.assert_allclose(out[:, fold, j], expected / expected.sum(-1, keepdims=True), rtol=1e-6)
  assert not np.allclose(out, probs, atol=1e-3)


def test_a_bad_prior_is_refused_before_a_workdir_or_data_is_made(tmp_path):
  from configs import composite_flow
  from deft_jax.train import loso
  cfg = composite_flow.get_config("tiny")
  cfg.folds.prior = "corpora"
  cfg.data.manual_dir = str(tmp_path / "no_such_folder")
  with pytest.raises(ValueError, match=r"folds.prior must be one of \('none', 'corpus', 'all'\), got 'corpora'"):
    loso.run(cfg, str(tmp_path / "work"))
  assert not (tmp_path / "work").exists()


@pytest.mark.slow
def test_composite_job_end_to_end_on_a_fake_layout(tmp_path):
  """`deft-jax train --config configs/composite_flow.py:tiny` builds, runs every fold of DEFT and
  STSTNet, and writes results.json, the per-clip log `deft-jax score` reads, and the report; with
  regions placed on each face's measured landmarks and prompts that name the corpus (the canonical
  regions run end to end in test_fold_base.py)."""
  from deft_jax import cli
  import test_composite_builder as fake
  manual = tmp_path / "manual"
  fake.write_layout(manual)
  work = tmp_path / "work"
  assert cli.main(["train", "--config", "configs/composite_flow.py:tiny", "--workdir", str(work),
                   f"--config.data.manual_dir={manual}", f"--config.data.data_dir={tmp_path / 'tfds'}",
                   "--config.data.name=megc2019_composite/f56", "--config.folds.face_geometry=placed",
                   "--config.folds.name_corpus=True", "--config.data.max_text_len=40"]) == 0
  results = json.loads((work / "results.json").read_text())
  assert results["model"] == "deft" and results["num_test_clips"] == len(fake.ROWS) and results["num_folds"] == 5
  assert set(results["per_dataset"]) == {"casme2", "smic", "samm"}
  assert "OPTIMISTIC" in results["optimistic"]["note"] and set(results["models"]) == {"deft", "ststnet"}
  log = log_lib.read(work / "predictions.csv")
  assert len(log) == len(fake.ROWS) and len(set(log.clip)) == len(fake.ROWS)
  assert (work / "peers" / "ststnet" / "results.json").exists() and (work / "report" / "README.md").exists()
  assert cli.main(["score", str(work / "predictions.csv")]) == 0


def test_prompts_name_the_corpus_only_when_asked():
  from deft_jax.data import answers
  from deft_jax.train import fold_data
  assert fold_data.instruction("samm", False) == answers.INSTRUCTIONS[0]
  assert fold_data.instruction("samm", True) == f"SAMM clip. {answers.INSTRUCTIONS[0]}"
  assert fold_data.instruction("casme2", True).startswith("CASME II clip. ")
  assert fold_data.instruction("mmew", True).startswith("mmew clip. ")  # unknown corpora: named as stored


def test_matmul_convs_equal_flax_conv():
  """models/convs.py keeps nn.Conv's parameters and outputs (stride-1 convs and patch embeddings)."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 28, 28, 3)), jnp.float32)
  for k, pad in ((3, 2), (5, 3), (3, 1), (5, 1)):
    ours = convs.PatchConv(4, k, pad)
    v = ours.init(jax.random.key(1), x)
    ref = nn.Conv(4, (k, k), padding=pad).apply({"params": v["params"]}, x)
    np.testing.assert_allclose(ours.apply(v, x), ref, rtol=1e-5, atol=1e-5)
  for k, pad in ((3, 2), (5, 0), (3, 1)):
    wide = x[:, :, :25]
    np.testing.assert_array_equal(convs.image_patches(wide, k, pad), jax.lax.conv_general_dilated_patches(
        wide, (k, k), (1, 1), [(pad, pad)] * 2, dimension_numbers=("NHWC", "HWIO", "NHWC")))

  class Streams(nn.Module):  # STSTNet's three streams sharing one gather of the patches
    @nn.compact
    def __call__(self, x):
      return convs.patch_convs(x, (3, 5, 8), 3, 2, ("a", "b", "c"))

  v = Streams().init(jax.random.key(3), x)
  outs = Streams().apply(v, x)
  for name, f, out in zip("abc", (3, 5, 8), outs):
    assert v["params"][name]["kernel"].shape == (3, 3, 3, f) and out.shape == (2, 30, 30, f)
    ref = nn.Conv(f, (3, 3), padding=2).apply({"params": v["params"][name]}, x)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
  video = jnp.asarray(rng.normal(size=(2, 4, 30, 30, 3)), jnp.float32)  # 30 px: a remainder to drop
  for inputs, patch in ((x, (4, 4)), (x, (7, 7)), (x[:, :27], (3, 2)), (x[:, :27], (4, 3)),
                        (video, (2, 4, 4))):
    ours = convs.PatchEmbed(5, patch)
    v = ours.init(jax.random.key(2), inputs)
    ref = nn.Conv(5, patch, strides=patch, padding="VALID").apply({"params": v["params"]}, inputs)
    np.testing.assert_allclose(ours.apply(v, inputs), ref, rtol=1e-5, atol=1e-5)
  for size in (30, 28, 29):  # every remainder mod 3; 28 is STSTNet's input
    image = jnp.asarray(rng.normal(size=(2, size, size, 4)), jnp.float32)
    np.testing.assert_array_equal(convs.max_pool(image, 3, padding=1),
                                  nn.max_pool(image, (3, 3), (3, 3), padding=((1, 1), (1, 1))))
    np.testing.assert_array_equal(convs.max_pool(image, 2), nn.max_pool(image, (2, 2), (2, 2)))


def test_fold_jobs_take_one_cpu_device_per_core(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
  folds.one_cpu_device_per_core()
  cores = len(os.sched_getaffinity(0))
  assert os.environ["XLA_FLAGS"] == f"--xla_cpu_enable_fast_math=false --xla_force_host_platform_device_count={cores}"
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=3")
  folds.one_cpu_device_per_core()
  assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=3"


def test_the_composite_default_is_the_point_the_validation_search_chose():
  """configs/composite_flow.py's model and schedule are configs/composite_search.py's chosen
  point applied to the search's base: the defaults come from the search, not from test scores."""
  from configs import composite_flow, composite_search  # pylint: disable=import-outside-toplevel
  search = composite_search.get_config()
  assert search.folds.mode == "validation" and tuple(search.folds.models) == ("deft",)
  chosen = {}
  for name, overrides in sweep.points(search):
    point = sweep.configure(search, overrides)  # every point applies to the base
    if name == composite_search.CHOSEN:
      chosen = point
  default = composite_flow.get_config()
  assert chosen.data.name == default.data.name
  for node in ("model", "loss", "optim"):
    assert chosen[node].to_dict() == default[node].to_dict(), node
  assert {k: v for k, v in chosen.folds.items() if k not in ("mode", "num_folds", "models")} == \
      {k: v for k, v in default.folds.items() if k not in ("mode", "num_folds", "models")}
  assert default.folds.mode == "test" and default.folds.num_folds == 0 and "ststnet" in default.folds.models


def test_sweep_only_runs_the_named_points_of_a_round():
  from configs import composite_search  # pylint: disable=import-outside-toplevel
  search = composite_search.get_config()
  every = [n for n, _ in sweep.points(search)]
  with search.unlocked():
    search.sweep_only = ("e_aligned", "e_placed")
  assert [n for n, _ in sweep.points(search)] == [n for n in every if n in ("e_aligned", "e_placed")]
  with search.unlocked():
    search.sweep_only = ("e_algined",)
  with pytest.raises(sweep.SweepError, match=r"sweep_only: no point named \['e_algined'\]"):
    sweep.points(search)
