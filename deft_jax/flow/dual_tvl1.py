"""TV-L1 optical flow in JAX: jitted, batched over pairs, the same on CPU, GPU and TPU.

Minimises  sum |grad u| + |grad v| + lam |I1(x + w) - I0(x)|  by the duality scheme of
Zach, Pock & Bischof (DAGM 2007), solved coarse to fine with repeated warps as detailed by
Sanchez, Meinhardt-Llopis & Facciolo, "TV-L1 Optical Flow Estimation", IPOL 2013 (cited
below as IPOL). Every loop over iterations is a lax loop and every shape is static.

Departures from IPOL: bilinear rather than bicubic warping, the gradient taken on the warped
image (as scikit-image does), a zoom factor fixed at 0.5, and theta = 0.15 by default.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from deft_jax import cpu as cpu_lib
from deft_jax.flow import pyramid
from deft_jax.flow import stencils
from deft_jax.flow import warp


@dataclasses.dataclass(frozen=True)
class TVL1Params:
  """Solver settings; the defaults follow IPOL (intensities span [0, 255]) except theta.

  Attributes:
    lam: data attachment lambda; smaller gives smoother flow.
    theta: tightness coupling the flow u to its auxiliary copy v. IPOL uses 0.3; 0.15 cut
      the error on synthetic micro-deformations by a quarter and halved the iterations
      (benchmarks/README_flow.md), at slightly more error on rigid motion under noise.
    tau: dual time step; Chambolle's projection converges for tau <= 1/4.
    warps: warps of frame1 per pyramid level (IPOL's nwarps).
    iterations: most fixed-point iterations per warp.
    epsilon: stop a warp once the mean squared flow change of one iteration is below
      epsilon**2 (IPOL's criterion); 0 runs exactly `iterations`.
    dual_steps: Chambolle projection steps per data step (scikit-image takes 2).
    rof_order: "ipol" or "skimage", the order of the primal and dual updates in _rof().
    min_size: smallest side allowed at the coarsest pyramid level.
    max_scales: most pyramid levels (the full-resolution level counts).
    pyramid_sigma: Gaussian blur before halving; IPOL uses 0.6 sqrt(1/zoom^2 - 1).
    presmooth_sigma: Gaussian blur of both frames before anything else (IPOL: 0.8).
    median: 3x3 median filter on the flow before each warp (scikit-image's prefilter).
    normalize: rescale each pair jointly to [0, 255] (IPOL); otherwise intensities are taken
      as given, uint8 read as [0, 1] like scikit-image.
    upsample: "linear" (bilinear) or "nearest" (scikit-image) flow transfer between levels.
  """
  lam: float = 0.15
  theta: float = 0.15
  tau: float = 0.25
  warps: int = 5
  iterations: int = 300
  epsilon: float = 0.01
  dual_steps: int = 1
  rof_order: str = "ipol"
  min_size: int = 16
  max_scales: int = 10
  pyramid_sigma: float = 0.6 * 3 ** 0.5
  presmooth_sigma: float = 0.8
  median: bool = False
  normalize: bool = True
  upsample: str = "linear"

  def __post_init__(self):
    if self.upsample not in ("linear", "nearest"):
      raise ValueError(f"upsample must be 'linear' or 'nearest', got {self.upsample!r}.")
    if self.rof_order not in ("ipol", "skimage"):
      raise ValueError(f"rof_order must be 'ipol' or 'skimage', got {self.rof_order!r}.")
    if min(self.warps, self.iterations, self.dual_steps, self.max_scales) < 1:
      raise ValueError("warps, iterations, dual_steps and max_scales must be >= 1.")
    if self.min_size < 2:
      raise ValueError(f"min_size must be >= 2, got {self.min_size}.")


# scikit-image's optical_flow_tvl1 defaults: attachment=15 -> lam, tightness=0.3 -> theta,
# num_warp=5 -> warps, num_iter=10 -> iterations, prefilter=False -> median. Its `tol` test
# (once per warp) almost never fires, so epsilon=0; its pyramid keeps levels whose side
# exceeds 16 px (min_size=17) and blurs with sigma 2/3 before halving.
SKIMAGE_COMPATIBLE = dict(
    lam=15.0, theta=0.3, tau=0.25, warps=5, iterations=10, epsilon=0.0, dual_steps=2,
    rof_order="skimage", min_size=17, max_scales=10, pyramid_sigma=2.0 / 3.0,
    presmooth_sigma=0.0, median=False, normalize=False, upsample="nearest")

# Consecutive frames of a video move a pixel or two, which three warps a level resolve: on the
# 48 real crops with known warps of benchmarks/flow_video.py (mean flow 1.99 px) three warps
# took 25% less CPU than IPOL's five for 0.0715 against 0.0696 px error (BENCHMARKS.md).
# Onset-to-apex flow, which can carry several pixels of head drift, keeps the defaults.
CONSECUTIVE_FRAMES = dict(warps=3)


def _threshold(w, grad, rho0, inv_grad_sq, lam_theta):
  """The point-wise data step: v minimising |v - w|^2 / (2 theta) + lam |rho(v)| (ZPB 2007).

  The step along grad is -rho / |grad|^2 where that stays within lam theta, else lam theta
  against the sign of rho: one clip of -rho / |grad|^2 to [-lam theta, lam theta].
  """
  rho = rho0 + grad[0] * w[0] + grad[1] * w[1]
  return w + jnp.clip(-rho * inv_grad_sq, -lam_theta, lam_theta) * grad


def _rof(v, p, prm):
  """Chambolle (2004) steps for min_u TV(u) + |u - v|^2 / (2 theta), warm-started at dual p.

  u and v hold both flow components (2, H, W), p their duals (2, 2, H, W): (component, x or y).
  Each step sets u = v + theta div p and moves p along grad u. IPOL does it in this order;
  scikit-image starts from u = v and moves p first.
  """
  u = v
  step = prm.tau / prm.theta
  for _ in range(prm.dual_steps):
    if prm.rof_order == "ipol":
      u = v + prm.theta * stencils.divergence(p[:, 0], p[:, 1])
    gx, gy = stencils.forward_gradient(u)
    norm = 1.0 + step * jnp.sqrt(gx * gx + gy * gy)
    p = (p + step * jnp.stack([gx, gy], axis=1)) / norm[:, None]
    if prm.rof_order == "skimage":
      u = v + prm.theta * stencils.divergence(p[:, 0], p[:, 1])
  return u, p


def _iterate(w, p, data, prm):
  grad, rho0, inv_grad_sq = data
  return _rof(_threshold(w, grad, rho0, inv_grad_sq, prm.lam * prm.theta), p, prm)


def _solve_level(i0, i1, w, prm):
  """Warps and fixed-point iterations at one pyramid level; the duals restart at zero.

  The flow w is (2, H, W): both components go through each step together, which XLA fuses
  into about half the kernels that two separate (H, W) problems take.
  """
  h, width = i0.shape
  ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(width, dtype=jnp.float32),
                        indexing="ij")
  duals = jnp.zeros((2, 2, h, width), jnp.float32)

  def one_warp(_, carry):
    w, p = carry
    if prm.median:
      w = stencils.median3x3(w)
    warped = warp.bilinear(i1, xs + w[0], ys + w[1])
    grad = jnp.stack(stencils.central_gradient(warped))
    grad_sq = grad[0] * grad[0] + grad[1] * grad[1]
    # 1 / |grad|^2 stays finite; where grad is (nearly) 0 the step along it is too.
    inv_grad_sq = 1.0 / jnp.maximum(grad_sq, np.finfo(np.float32).tiny)
    rho0 = warped - i0 - grad[0] * w[0] - grad[1] * w[1]  # residual linearised about this warp
    data = (grad, rho0, inv_grad_sq)

    if prm.epsilon <= 0:
      return lax.fori_loop(0, prm.iterations, lambda _, c: _iterate(*c, data, prm), (w, p))

    def cond(state):
      n, err, _ = state
      return (n < prm.iterations) & (err > prm.epsilon ** 2)

    def body(state):
      n, _, (w, p) = state
      new_w, p = _iterate(w, p, data, prm)
      err = jnp.mean(jnp.sum((new_w - w) ** 2, axis=0))  # IPOL's stopping test
      return n + 1, err, (new_w, p)

    state = (0, jnp.array(jnp.inf, jnp.float32), (w, p))
    return lax.while_loop(cond, body, state)[2]

  return lax.fori_loop(0, prm.warps, one_warp, (w, duals))[0]


def _prepare(f0, f1, prm):
  f0, f1 = _as_float(f0), _as_float(f1)
  if prm.normalize:  # IPOL: both frames share one min-max map to [0, 255]
    lo = jnp.minimum(f0.min(), f1.min())
    scale = 255.0 / jnp.maximum(jnp.maximum(f0.max(), f1.max()) - lo, 1e-12)
    f0, f1 = (f0 - lo) * scale, (f1 - lo) * scale
  return (pyramid.gaussian_blur(f0, prm.presmooth_sigma),
          pyramid.gaussian_blur(f1, prm.presmooth_sigma))


def _tvl1_pair(f0, f1, prm):
  f0, f1 = _prepare(f0, f1, prm)
  shapes = pyramid.level_shapes(f0.shape, prm.min_size, prm.max_scales)
  levels = [(f0, f1)]
  for _ in shapes[1:]:
    a, b = levels[-1]
    levels.append((pyramid.halve(a, prm.pyramid_sigma), pyramid.halve(b, prm.pyramid_sigma)))
  w = jnp.zeros((2, *shapes[-1]), jnp.float32)
  for i0, i1 in reversed(levels):
    if w.shape[1:] != i0.shape:
      w = jnp.stack(pyramid.upsample_flow(w[0], w[1], i0.shape, prm.upsample))
    w = _solve_level(i0, i1, w, prm)
  return jnp.moveaxis(w, 0, -1)


def _tvl1_map(f0, f1, prm, chunk):
  pair = functools.partial(_tvl1_pair, prm=prm)
  return lax.map(lambda frames: pair(*frames), (f0, f1), batch_size=chunk)


def _spread(f0, f1, prm, chunk, mesh):
  """Pairs laid out (m, k, H, W): device j of `mesh` loops over column j, all devices at once.

  One compiled program serves every device (a jit per device would compile once per device).
  Column j holds pairs j, j + k, j + 2k, ... of the batch, so slow stretches of a video are
  shared, and the (m, k) result reads back in batch order without a transpose.
  """
  spec = jax.P(None, "pairs")
  local = lambda a, b: _tvl1_map(a[:, 0], b[:, 0], prm, chunk)[:, None]
  return jax.shard_map(local, mesh=mesh, in_specs=(spec, spec), out_specs=spec,
                       check_vma=False)(f0, f1)  # no collectives: each device on its own


# XLA:CPU emits 256-bit vectors by default; with 512 (AVX-512) the solver's memory-bound kernels
# took 5% less time on the benchmark machine, with the same flow to the bit.
_STATIC = ("prm", "chunk", "mesh")
_SPREAD = {"cpu": jax.jit(_spread, static_argnames=_STATIC,
                          compiler_options={"xla_cpu_prefer_vector_width": 512})}
_SPREAD_OTHER = jax.jit(_spread, static_argnames=_STATIC)


def _solve(f0, f1, prm, chunk, devices):
  """Spreads the pairs over `devices`, each solving `chunk` pairs per loop step; the batch is
  padded with its last pair to a multiple of the device count. Host (NumPy) frames stay on the
  host until each device receives its own: reshuffling them on an XLA:CPU device took seconds."""
  if isinstance(f0, jax.core.Tracer) or isinstance(f1, jax.core.Tracer):  # under jit: one loop
    return _tvl1_map(f0, f1, prm, chunk)
  devices = devices[:f0.shape[0]]  # no device idles on padding when the pairs are fewer
  n, k = f0.shape[0], len(devices)
  m = -(-n // k)
  xp = np if isinstance(f0, np.ndarray) and isinstance(f1, np.ndarray) else jnp
  if m * k > n:
    f0, f1 = (xp.concatenate([x, xp.repeat(x[-1:], m * k - n, axis=0)]) for x in (f0, f1))
  f0, f1 = (x.reshape(m, k, *x.shape[1:]) for x in (f0, f1))
  mesh = jax.sharding.Mesh(np.asarray(devices), ("pairs",))
  spread = _SPREAD.get(devices[0].platform, _SPREAD_OTHER)
  flow = spread(f0, f1, prm, min(chunk, m), mesh)
  if devices[0].platform == "cpu":  # gathered by NumPy: XLA:CPU copies it several times slower
    flow = np.asarray(flow)
  flow = flow.reshape(m * k, *flow.shape[2:])[:n]
  return jax.device_put(flow, devices[0])


# uint8 -> [0, 1] as correctly rounded float32 (NumPy's v / 255): XLA's CPU backend divides by a
# constant as a multiply by its reciprocal, off by one ulp for about a third of the values, which
# the iterative solver can grow to several hundredths of a pixel at ill-conditioned pixels.
_UINT8_UNIT = np.arange(256, dtype=np.float32) / np.float32(255)


def _as_float(frame):
  if frame.dtype == jnp.uint8:
    return jnp.asarray(_UINT8_UNIT)[frame]
  return frame.astype(jnp.float32)


def _frames(frame, name):
  """The frames as given (host arrays stay on the host), dtype checked; converted per pair."""
  if not isinstance(frame, (np.ndarray, jax.Array)):
    frame = np.asarray(frame)
  if not (jnp.issubdtype(frame.dtype, jnp.floating) or jnp.issubdtype(frame.dtype, jnp.integer)):
    raise TypeError(f"{name} must be a float or uint8 array, got dtype {frame.dtype}.")
  return frame


def tvl1(frame0, frame1, *, chunk=None, devices=None, **params):
  """Dense TV-L1 flow from frame0 to frame1, in pixels.

  Args:
    frame0: grayscale (H, W) or a batch (N, H, W); float, or uint8 read as [0, 1].
    frame1: same shape as frame0.
    chunk: pairs solved together (vmap) per step of a loop over the batch; results do not
      depend on it. None picks 1 on CPU, where one pair's arrays stay in cache, and the whole
      batch on GPU and TPU.
    devices: devices that share a batch, each looping over its part. None takes the local
      devices on CPU, at most one per core (XLA runs most of a CPU device's work on one thread,
      so one device per core, e.g. XLA_FLAGS=--xla_force_host_platform_device_count=2, uses
      two cores), and the default device elsewhere. Results do not depend on it.
    **params: fields of TVL1Params, e.g. `**SKIMAGE_COMPATIBLE` to reproduce
      skimage.registration.optical_flow_tvl1 with its defaults.

  Returns:
    float32 flow of shape (..., H, W, 2) holding (dx, dy), such that
    frame1(x + flow(x)) ~ frame0(x).
  """
  prm = TVL1Params(**params)
  shape0, shape1 = np.shape(frame0), np.shape(frame1)
  if len(shape0) not in (2, 3) or min(shape0[-2:], default=0) < 2:
    raise ValueError(f"frame0 must have shape (H, W) or (N, H, W) with H, W >= 2, "
                     f"got {shape0}.")
  if shape1 != shape0:
    raise ValueError(f"frame1 must have the shape of frame0, {shape0}, got {shape1}.")
  f0, f1 = _frames(frame0, "frame0"), _frames(frame1, "frame1")
  cpu = jax.default_backend() == "cpu"
  if devices is None:  # on CPU one device per core; more (as tests fake) only add threads
    devices = jax.local_devices()[:cpu_lib.usable_cores()] if cpu else jax.local_devices()[:1]
  if f0.ndim == 2:
    return _solve(f0[None], f1[None], prm, 1, list(devices)[:1])[0]
  if chunk is None:
    chunk = 1 if cpu else f0.shape[0]
  return _solve(f0, f1, prm, max(int(chunk), 1), list(devices))
