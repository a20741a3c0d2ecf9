"""Head motion out of the flow (deft_jax/flow/head.py): a synthetic clip with a large rigid head
drift added reads, after removal, as the same clip without it (TV-L1 flow on rendered frames)."""

import dataclasses

import numpy as np
import pytest

from deft_jax import flow as flow_lib
from deft_jax.data import synthetic
from deft_jax.facs import evidence, regions
from deft_jax.flow import head

SIZE = 64


def _clip(head_motion, seed):
  """A happiness clip; the same draws for any head_motion (the drift's std scales, not its draw)."""
  rng = np.random.default_rng(seed)
  subject = synthetic.make_subject("s", rng)
  capture = dataclasses.replace(synthetic.SOURCES["casme2"], head_motion=head_motion, noise=0.005, blink_rate=0.0)
  record = synthetic.make_clip(subject, "happiness", capture, rng, num_frames=6, size=SIZE)
  gray = lambda i: record["frames"][i].mean(-1).astype(np.uint8)
  measured = np.asarray(flow_lib.tvl1(gray(record["onset_index"]), gray(record["apex_index"])))
  return subject, record, measured


def test_similarity_fit_recovers_a_rigid_motion_exactly():
  rng = np.random.default_rng(0)
  xs, ys = np.meshgrid(np.arange(SIZE) - (SIZE - 1) / 2, np.arange(SIZE) - (SIZE - 1) / 2)
  shift, scale, angle = rng.normal(0, 2, 2), 0.02, 0.03
  rigid = np.stack([shift[0] + scale * xs - angle * ys, shift[1] + scale * ys + angle * xs], -1)
  face = np.zeros((SIZE, SIZE, 2))
  face[40:50, 20:44, 1] = -1.5  # an AU inside the mouth region: not head motion
  assert np.abs(head.remove(rigid + face, "similarity") - face).max() < 1e-4
  assert np.abs(head.remove(rigid + face, "affine") - face).max() < 1e-4
  # The nose tip moves with the head, and only a shift comes out.
  assert np.abs(head.remove(shift + face, "nose") - face).max() < 1e-5
  with pytest.raises(ValueError, match="head motion model 'wobble'"):
    head.remove(face, "wobble")


@pytest.mark.parametrize("seed", [0, 2])
@pytest.mark.parametrize("model", ["similarity", "nose"])
def test_head_motion_removed_leaves_the_same_region_motion_and_au_evidence(seed, model):
  subject, still, flow_still = _clip(0.0, seed)
  _, moving, flow_moving = _clip(3.0, seed)
  assert np.abs(still["flow"] - moving["flow"]).max() > 1.0  # the head really moved, by pixels
  landmarks = regions.to_canonical(regions.to_pixels(subject.points, SIZE), SIZE)
  masks = regions.region_masks(SIZE, landmarks=landmarks)
  means = lambda f: np.stack([f[m].mean(0) for m in masks])
  # Measured (TV-L1) flow, as the motion expert and the region figure read it.
  assert np.abs(means(flow_still) - means(flow_moving)).max() > 1.0  # without removal regions differ
  clean_still = head.remove(flow_still, model, landmarks=landmarks)
  clean_moving = head.remove(flow_moving, model, landmarks=landmarks)
  assert np.abs(means(clean_still) - means(clean_moving)).max() < 0.06
  # Uni-MER's evidence on the clips' exact flows: the same AUs, the same amplitudes, and no head
  # motion left for its own fit to find.
  measure = evidence.Measurer(SIZE, landmarks=landmarks)
  a, b = measure(head.remove(still["flow"], model, landmarks=landmarks)), measure(
      head.remove(moving["flow"], model, landmarks=landmarks))
  assert a.au_amplitude().max() > 0.5  # the expression is there
  assert np.abs(a.au_amplitude() - b.au_amplitude()).max() < 0.02
  assert max(abs(b.head["shift_x"]), abs(b.head["shift_y"])) < 0.05
  assert max(abs(v) for v in measure(moving["flow"]).head.values()) > 1.0
