"""Regions placed on each face, and flow aligned by its landmarks (data/face_geometry.py), as the
fold program reads them; and the composite builder's measured landmarks on a real face."""

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deft_jax.data import align, face_geometry, pipeline
from deft_jax.facs import catalogue, regions
from deft_jax.train import fold_models, folds
from media import feat_media

SIZE = 56


def _blobs(points: np.ndarray, size: int = SIZE) -> np.ndarray:
  """(S, S, 3) float32: a Gaussian bump at the left eye's centre (channel 0), the mouth's (1),
  the nose tip's (2), for landmarks in canonical coordinates."""
  ys, xs = np.mgrid[:size, :size].astype(np.float32)
  out = []
  for where in (points[36:42].mean(0), points[48:68].mean(0), points[30]):
    x, y = regions.to_pixels(where, size)
    out.append(np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * 2.0 ** 2)))
  return np.stack(out, -1).astype(np.float32)


def _peak(image: np.ndarray) -> np.ndarray:
  """(x, y) centroid of each channel's bump (whole image: unbiased for a bump well inside it)."""
  ys, xs = np.mgrid[:image.shape[0], :image.shape[1]]
  w = image / image.sum((0, 1))
  return np.stack([(w * xs[..., None]).sum((0, 1)), (w * ys[..., None]).sum((0, 1))], -1)


def _faces(n: int, seed: int, jitter: float = 0.004):
  """n faces: the canonical shape moved by a random scale and shift, each point jittered."""
  rng = np.random.default_rng(seed)
  s = rng.uniform(0.8, 1.2, n)
  t = rng.uniform(-0.12, 0.12, (n, 2))
  jitter = rng.normal(0, jitter, (n, 68, 2))
  return (s[:, None, None] * regions.CANONICAL_68[None] + t[:, None] + jitter).astype(np.float32), s, t


def test_scale_and_shift_fit_recovers_a_known_move():
  points, s, t = _faces(1, seed=np.random.SeedSequence().entropy % 2**32)
  target = regions.CANONICAL_68
  fs, ft = face_geometry.fit_scale_shift(points[0], target)
  assert fs == pytest.approx(1 / s[0], rel=0.01)
  np.testing.assert_allclose(ft, -t[0] / s[0], atol=0.01)


def test_aligned_flow_puts_every_face_on_the_mean_face():
  # Exact moves of one shape, so what is left is the warp's own error, not the fit's.
  points, _, _ = _faces(6, seed=np.random.SeedSequence().entropy % 2**32, jitter=0.0)
  flow = np.stack([_blobs(p) for p in points])
  face = (flow * 255).astype(np.uint8)
  before = np.stack([_peak(f) for f in flow])
  out, out_face, boxes = face_geometry.apply("aligned", flow, face, points)
  after = np.stack([_peak(f) for f in out])
  target = regions.to_pixels(np.stack([points.mean(0)[36:42].mean(0), points.mean(0)[48:68].mean(0),
                                       points.mean(0)[30]]), SIZE)
  truth = np.stack([regions.to_pixels(np.stack([p[36:42].mean(0), p[48:68].mean(0), p[30]]), SIZE) for p in points])
  np.testing.assert_allclose(before, truth, atol=0.02)  # the centroid finds a bump where it was put
  assert np.abs(before - target).max() > 2.0  # the faces were apart by pixels
  np.testing.assert_allclose(after, np.broadcast_to(target, after.shape), atol=0.1)  # now on the mean face
  np.testing.assert_allclose(np.stack([_peak(f.astype(np.float32)) for f in out_face]), after, atol=0.6)
  np.testing.assert_allclose(boxes, np.broadcast_to(pipeline.region_boxes(points.mean(0)), boxes.shape), atol=1e-6)
  assert out.shape == flow.shape and out.dtype == flow.dtype and out_face.dtype == np.uint8
  assert not np.shares_memory(out, flow)  # the loaded clips are left as they were


def test_placed_regions_are_each_faces_own_and_canonical_changes_nothing():
  points, _, _ = _faces(3, seed=1)
  flow = np.random.default_rng(2).normal(size=(3, SIZE, SIZE, 3)).astype(np.float32)
  face = np.zeros((3, 8, 8, 3), np.uint8)
  out, _, boxes = face_geometry.apply("placed", flow, face, points)
  assert out is flow
  for p, b in zip(points, boxes):
    placed = regions.place_regions(p)
    np.testing.assert_allclose(b, [placed[r] for r in catalogue.REGIONS], atol=1e-6)
  out, _, boxes = face_geometry.apply("canonical", flow, face, points)
  assert out is flow and boxes is None


def test_geometry_errors_name_the_field_and_the_clip():
  flow, face = np.zeros((2, SIZE, SIZE, 3), np.float32), np.zeros((2, 8, 8, 3), np.uint8)
  canonical = np.repeat(regions.CANONICAL_68[None], 2, 0)
  with pytest.raises(ValueError, match="face_geometry must be one of"):
    face_geometry.apply("warped", flow, face, canonical)
  with pytest.raises(ValueError, match="measured none"):
    face_geometry.apply("aligned", flow, face, canonical)
  points, _, _ = _faces(2, seed=3)
  points[1] *= 0.1  # not a face's landmarks: a tiny cluster
  with pytest.raises(ValueError, match="casme2/sub02/EP03: .*scale"):
    face_geometry.apply("aligned", flow, face, points, ("casme2/sub01/EP01", "casme2/sub02/EP03"))


def test_mirror_reflects_the_region_boxes_with_the_flow():
  points, _, _ = _faces(4, seed=4)
  boxes = jnp.asarray(np.stack([pipeline.region_boxes(p) for p in points]))
  batch = {"flow": jnp.zeros((4, SIZE, SIZE, 3)), "region_boxes": boxes}
  mirrored = folds.mirror(batch)["region_boxes"]
  np.testing.assert_allclose(mirrored[..., 0], -boxes[..., 2])
  np.testing.assert_allclose(mirrored[..., 2], -boxes[..., 0])
  np.testing.assert_allclose(mirrored[..., [1, 3]], boxes[..., [1, 3]])
  np.testing.assert_allclose(folds.mirror(folds.mirror(batch))["region_boxes"], boxes)
  # The training flip moves the boxes with the flow it mirrors.
  flow = jnp.asarray(np.random.default_rng(5).normal(size=(64, 6, 6, 3)), jnp.float32)
  many = {"flow": flow, "region_boxes": jnp.repeat(boxes[:1], 64, 0)}
  out = folds.Augment(flip=True)(many, jax.random.key(0))
  flipped = ~np.isclose(np.asarray(out["flow"]), np.asarray(flow)).all(axis=(1, 2, 3))
  assert 10 < flipped.sum() < 54
  np.testing.assert_allclose(np.asarray(out["region_boxes"])[flipped], np.asarray(mirrored)[:1].repeat(flipped.sum(), 0))
  np.testing.assert_allclose(np.asarray(out["region_boxes"])[~flipped], np.asarray(boxes)[:1].repeat((~flipped).sum(), 0))
  # And DEFT's batch passes them to the motion expert.
  text = {k: jnp.zeros((4, 3), jnp.int32) for k in ("text_ids", "text_mask", "loss_mask")}
  deft = fold_models.deft_batch({**batch, **text, "prompt_len": jnp.zeros(4, jnp.int32), "aus": jnp.zeros((4, 2)),
                                 "label": jnp.zeros(4, jnp.int32)}, evaluation=False)
  assert deft["region_boxes"] is boxes


def real_face_crop(size: int = 224, scale: float = 1.0, shift=(0, 0)) -> np.ndarray:
  """single_face.jpg cut as the composite's crops are (a tight square on the face), resized to
  `size`; scale > 1 zooms in, shift moves the face (pixels of the crop)."""
  image = cv2.cvtColor(cv2.imread(feat_media("single_face.jpg")), cv2.COLOR_BGR2RGB)
  x, y, w, h = align.detect(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), "dlib")[0]
  side = max(w, h) * 1.15 / scale
  cx, cy = x + w / 2 - shift[0] * side / size, y + h / 2 + 0.05 * h - shift[1] * side / size
  k = size / side
  matrix = np.array([[k, 0, size / 2 - k * cx], [0, k, size / 2 - k * cy]])
  return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)


def test_composite_builder_measures_the_landmarks_of_a_real_face(tmp_path):
  from data_builders.megc2019_composite import megc2019_composite_dataset_builder as comp
  base = comp.face_landmarks(real_face_crop())
  eyes = (base[36:42].mean(0), base[42:48].mean(0))
  assert eyes[0][0] < -0.1 and eyes[1][0] > 0.1 and abs(eyes[0][1] - eyes[1][1]) < 0.1  # level, either side
  assert eyes[0][1] < base[30][1] < base[48:68].mean(0)[1]  # eyes above the nose tip above the mouth
  # The same face zoomed and moved in its crop: the points move with it, and aligning by them
  # puts it back (the scale and shift that the fold program's "aligned" geometry would fit).
  moved = comp.face_landmarks(real_face_crop(scale=1.15, shift=(10, -6)))
  s, t = face_geometry.fit_scale_shift(moved, base)
  assert s == pytest.approx(1 / 1.15, abs=0.04)
  np.testing.assert_allclose(s * moved[17:] + t, base[17:], atol=0.04)


def test_centred_flow_puts_the_still_skin_at_zero_and_commutes_with_the_mirror():
  from deft_jax.train import fold_data  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(np.random.SeedSequence().entropy % 2**32)
  still = rng.uniform(-0.9, 0.9, (5, 1, 1, 2))
  flow = np.concatenate([np.broadcast_to(still, (5, 28, 28, 2)), rng.uniform(0, 1, (5, 28, 28, 1))], -1)
  flow = flow.astype(np.float32).copy()
  flow[:, 10:14, 5:9, :2] += rng.normal(0, 0.5, (5, 4, 4, 2))  # one moving patch a clip
  out = fold_data.centred(flow)
  np.testing.assert_allclose(np.median(out[..., :2], axis=(1, 2)), 0, atol=1e-6)
  np.testing.assert_allclose(out[:, 20:, 20:, :2], 0, atol=1e-6)  # the still skin
  np.testing.assert_array_equal(out[..., 2], flow[..., 2])
  np.testing.assert_allclose(out[:, 10:14, 5:9, :2] - flow[:, 10:14, 5:9, :2], -np.broadcast_to(still, (5, 4, 4, 2)),
                             atol=1e-6)
  mirror = lambda f: np.asarray(folds.mirror({"flow": jnp.asarray(f)})["flow"])
  np.testing.assert_allclose(fold_data.centred(mirror(flow)), mirror(out), atol=1e-6)
