"""TV-L1 flow against scikit-image and exact warps; strain, direction and apex spotting.

Inputs are drawn fresh on every run; each test prints its seed, which pytest shows on failure.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.registration import optical_flow_tvl1

from deft_jax import flow
from deft_jax.flow import synthetic

MARGIN = 8  # px of border left out of every error


@pytest.fixture
def rng():
  seed = int(np.random.SeedSequence().entropy % 2**63)
  print(f"seed = {seed}")
  return np.random.default_rng(seed)


def _inner(mask):
  mask = mask.copy()
  mask[:MARGIN] = mask[-MARGIN:] = mask[:, :MARGIN] = mask[:, -MARGIN:] = False
  return mask


def _epe(a, b, mask):
  return float(np.linalg.norm(np.asarray(a) - np.asarray(b), axis=-1)[mask].mean())


def _pairs(rendered):
  frames0 = np.stack([r[0] for r in rendered]).astype(np.float32)
  frames1 = np.stack([r[1] for r in rendered]).astype(np.float32)
  return frames0, frames1, np.stack([r[2] for r in rendered])


def _face_pairs(rng, size, n):
  face, mask = synthetic.face(rng, size)
  rendered = [synthetic.render_pair(face, synthetic.bumps(rng, size), size) for _ in range(n)]
  return (*_pairs(rendered), _inner(mask))


def test_matches_skimage_with_its_parameters(rng):
  size = 128
  rendered = [synthetic.render_pair(synthetic.texture(rng), synthetic.smooth_warp(rng, size), size)
              for _ in range(3)]
  frames0, frames1, _ = _pairs(rendered)
  ours = flow.tvl1(frames0, frames1, **flow.SKIMAGE_COMPATIBLE)
  inner = _inner(np.ones((size, size), bool))
  differences = [  # skimage returns (dy, dx) planes
      _epe(ours[i], optical_flow_tvl1(a, b)[::-1].transpose(1, 2, 0), inner)
      for i, (a, b) in enumerate(zip(frames0, frames1))]
  print(differences)
  assert max(differences) <= 0.05, differences


@pytest.mark.parametrize("params", [{}, flow.CONSECUTIVE_FRAMES], ids=["ipol", "consecutive_frames"])
def test_recovers_exact_flow_of_known_warps(rng, params):
  size = 128
  face, mask = synthetic.face(rng, size)
  centre = rng.uniform(54, 74, 2)
  warps = {
      "translation": synthetic.translation(*rng.uniform(-3, 3, 2)),
      "rotation": synthetic.rotation(rng.uniform(-3, 3), *centre),
      "micro-deformation": synthetic.bumps(rng, size),
      "micro-deformation + head motion": synthetic.compose(
          synthetic.bumps(rng, size), synthetic.translation(*rng.uniform(-1, 1, 2)),
          synthetic.rotation(rng.uniform(-1, 1), *centre)),
  }
  frames0, frames1, exact = _pairs([synthetic.render_pair(face, d, size) for d in warps.values()])
  estimated = flow.tvl1(frames0, frames1, **params)
  errors = {name: _epe(estimated[i], exact[i], _inner(mask)) for i, name in enumerate(warps)}
  print(errors)
  assert all(e <= 0.15 for e in errors.values()), errors


def test_batch_equals_pairs_one_by_one(rng):
  frames0, frames1, _, _ = _face_pairs(rng, 64, 3)
  looped = flow.tvl1(frames0, frames1)  # CPU default: one pair at a time
  vmapped = flow.tvl1(frames0, frames1, chunk=3)
  for i in range(3):
    single = flow.tvl1(frames0[i], frames1[i])
    np.testing.assert_allclose(looped[i], single, atol=1e-3)
    np.testing.assert_allclose(vmapped[i], single, atol=1e-3)


def test_devices_share_a_batch_without_changing_it(rng):
  frames0, frames1, _, _ = _face_pairs(rng, 64, 5)
  one = flow.tvl1(frames0, frames1, devices=jax.devices()[:1])
  assert len(jax.devices()) >= 3  # tests/conftest.py: 8 CPU devices
  for devices in (jax.devices()[:2], jax.devices()[:3], jax.devices()):  # 5 pairs: padded to 6 on 2 and 3; 5 of 8
    spread = flow.tvl1(frames0, frames1, devices=devices)
    assert spread.shape == one.shape
    np.testing.assert_allclose(spread, one, atol=1e-5)
  np.testing.assert_allclose(flow.tvl1(frames0, frames1, chunk=2, devices=jax.devices()[:2]), one,
                             atol=1e-3)


def test_jit_and_uint8(rng):
  frames0, frames1, _, _ = _face_pairs(rng, 64, 2)
  as_uint8 = [np.round(f * 255).astype(np.uint8) for f in (frames0, frames1)]
  as_float = [f.astype(np.float32) / 255 for f in as_uint8]
  eager = flow.tvl1(*as_float)
  assert eager.shape == (2, 64, 64, 2) and eager.dtype == jnp.float32
  np.testing.assert_allclose(flow.tvl1(*as_uint8), eager, atol=1e-3)
  np.testing.assert_allclose(jax.jit(flow.tvl1)(*as_float), eager, atol=1e-3)


@pytest.mark.parametrize("shape0, shape1, message", [
    ((8, 8), (8, 9), r"frame1 must have the shape of frame0, \(8, 8\)"),
    ((8,), (8,), r"frame0 must have shape \(H, W\) or \(N, H, W\)"),
    ((2, 2, 8, 8), (2, 2, 8, 8), r"frame0 must have shape \(H, W\) or \(N, H, W\)"),
    ((1, 8), (1, 8), r"frame0 must have shape .* H, W >= 2"),
])
def test_bad_shapes_are_named(shape0, shape1, message):
  with pytest.raises(ValueError, match=message):
    flow.tvl1(np.zeros(shape0), np.zeros(shape1))


def test_bad_parameters():
  frames = np.zeros((8, 8))
  with pytest.raises(TypeError, match="attachment"):
    flow.tvl1(frames, frames, attachment=15)
  with pytest.raises(ValueError, match="upsample"):
    flow.tvl1(frames, frames, upsample="cubic")


def _analytic_field(rng, size):
  """(flow, exact strain) of a smooth random field with closed-form derivatives."""
  y, x = np.mgrid[:size, :size].astype(np.float64)
  k = 2 * np.pi / rng.uniform(30, 60, (2, 2))
  amp, phase = rng.uniform(0.5, 2, 2), rng.uniform(0, 2 * np.pi, 2)
  arg_u, arg_v = k[0, 0] * x + k[0, 1] * y + phase[0], k[1, 0] * x + k[1, 1] * y + phase[1]
  u, v = amp[0] * np.sin(arg_u), amp[1] * np.cos(arg_v)
  du, dv = amp[0] * np.cos(arg_u), -amp[1] * np.sin(arg_v)
  u_x, u_y, v_x, v_y = k[0, 0] * du, k[0, 1] * du, k[1, 0] * dv, k[1, 1] * dv
  exact = np.sqrt(u_x ** 2 + v_y ** 2 + 0.5 * (u_y + v_x) ** 2)
  return np.stack([u, v], -1), exact


def test_strain_matches_the_formula_on_analytic_fields(rng):
  field, exact = _analytic_field(rng, 96)
  got = np.asarray(flow.optical_strain(field))
  inner = (slice(1, -1),) * 2  # central differences: O(h^2), about 1% at these wavelengths
  np.testing.assert_allclose(got[inner], exact[inner], rtol=0.02, atol=1e-3)
  u_y, u_x = np.gradient(field[..., 0])  # the same formula on np.gradient, border included
  v_y, v_x = np.gradient(field[..., 1])
  np.testing.assert_allclose(got, np.sqrt(u_x ** 2 + v_y ** 2 + 0.5 * (u_y + v_x) ** 2),
                             rtol=1e-5, atol=1e-6)


def test_strain_counts_shear_once():
  y, x = np.mgrid[:16, :16].astype(np.float32)
  a = 0.3
  rotation = np.stack([-a * y, a * x], -1)  # rigid: u_y = -v_x, no strain
  shear = np.stack([a * y, a * x], -1)  # u_y = v_x = a: strain sqrt(0.5 (2a)^2) = sqrt(2) a
  np.testing.assert_allclose(flow.optical_strain(rotation), 0, atol=1e-6)
  np.testing.assert_allclose(flow.optical_strain(shear), np.sqrt(2) * a, rtol=1e-6)


def test_magnitude_and_direction():
  vectors = np.array([[1, 0], [0, 2], [-3, 0], [0, -1], [3, 4]], np.float32)[None]
  magnitude, direction = flow.magnitude_direction(vectors)
  np.testing.assert_allclose(magnitude[0], [1, 2, 3, 1, 5], rtol=1e-6)
  np.testing.assert_allclose(direction[0], [0, np.pi / 2, np.pi, -np.pi / 2, np.arctan2(4, 3)],
                             rtol=1e-6)


def _clip(rng, size, peaks, frames):
  """A clip whose two local motions (upper and lower face) peak at the given frames."""
  face, _ = synthetic.face(rng, size)
  sites = ((0.5, 0.3), (0.5, 0.75))  # (x, y) as fractions of the size: brows, mouth
  angles = rng.uniform(0, 2 * np.pi, len(sites))
  clip = []
  for t in range(frames):
    fields = []
    for (cx, cy), peak, angle in zip(sites, peaks, angles):
      amplitude = 1.5 * np.exp(-0.5 * (t - peak) ** 2)

      def bump(x, y, cx=cx * size, cy=cy * size, a=amplitude, angle=angle):
        g = a * np.exp(-0.5 * ((x - cx) ** 2 + (y - cy) ** 2) / 6.0 ** 2)
        return g * np.cos(angle), g * np.sin(angle)

      fields.append(bump)
    clip.append(synthetic.render_pair(face, synthetic.compose(*fields), size)[1])
  return np.stack(clip).astype(np.float32)


def test_spot_apex_finds_peak_motion_in_the_masked_region(rng):
  size, frames = 64, 9
  upper, lower = rng.choice(np.arange(2, frames), 2, replace=False)
  clip = _clip(rng, size, (upper, lower), frames)
  y = np.arange(size)[:, None] * np.ones((1, size))
  assert flow.spot_apex(clip, mask=y < size / 2).index == upper
  assert flow.spot_apex(clip, mask=y >= size / 2).index == lower
  apex = flow.spot_apex(clip)
  assert not apex.fallback and apex.motion[0] == 0 and apex.motion.shape == (frames,)


def test_spot_apex_falls_back_to_the_middle_frame_without_motion(rng):
  frame = synthetic.face(rng, 64)[0](*np.mgrid[:64, :64][::-1].astype(np.float64))
  apex = flow.spot_apex(np.repeat(frame[None].astype(np.float32), 9, axis=0), onset=2)
  assert apex.fallback and apex.index == 5


def test_spot_apex_with_head_motion_out_ignores_a_head_shift(rng):
  """A frame where only the head moved (a 2 px shift, larger than the expression) is the apex
  of the raw flow, and not once the head's motion is taken out."""
  size, frames, peak = 64, 7, 3
  face, _ = synthetic.face(rng, size)
  clip = []
  for t in range(frames):
    amplitude = 1.5 * np.exp(-0.5 * (t - peak) ** 2)

    def bump(x, y, a=amplitude):
      g = a * np.exp(-0.5 * ((x - 32) ** 2 + (y - 48) ** 2) / 6.0 ** 2)  # the mouth region
      return 0 * g, -g

    shift = synthetic.translation(2.0, 1.0) if t == frames - 1 else synthetic.translation(0.0, 0.0)
    clip.append(synthetic.render_pair(face, synthetic.compose(bump, shift), size)[1])
  clip = np.stack(clip).astype(np.float32)
  mask = np.zeros((size, size), bool)
  mask[40:56, 16:48] = True
  assert flow.spot_apex(clip, mask=mask).index == frames - 1
  assert flow.spot_apex(clip, mask=mask, head="similarity").index == peak
  assert flow.spot_apex(clip, mask=mask, head="nose").index == peak
