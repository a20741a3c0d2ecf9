"""What a clip's onset->apex flow says about each AU and face region.

The motion half of Uni-MER's dual constraint. The flow is explained as head motion
(translation, in-plane rotation, scale) plus one displacement bump per AU site: a Gaussian of
the AU's spread at its site, pointing the way the catalogue says its skin moves. AU
amplitudes are constrained to be non-negative (least squares under a sign constraint, Lawson
& Hanson, "Solving Least Squares Problems", 1974, ch. 23), so
  - motion against an AU's direction is no evidence for it (a brow lowering does not read as
    a weak brow raise), and
  - neighbouring AUs compete for the same motion: an inner-brow raise is explained by AU1,
    and AU2 next to it is left with what AU1 cannot explain.
An AU's amplitude is the peak displacement (pixels) of its bump. The clip's noise level is the
robust spread (1.4826 x median absolute deviation) of the flow left unexplained, so a clip
whose flow is noisy needs more motion before anything counts as seen.
"""

import dataclasses

import numpy as np

from deft_jax.facs import catalogue, regions

NUISANCE = ("shift_x", "shift_y", "rotation", "scale")


@dataclasses.dataclass(frozen=True)
class RegionMotion:
  """Motion of one face region after head motion is taken out.

  mean: mean (dx, dy) in pixels, with dx mirrored on the image-right half so that motions
    towards the midline on both halves add up instead of cancelling (+dx: inward).
  magnitude: mean displacement length (pixels).
  direction: angle of `mean` (radians; 0 = inward, pi/2 = down).
  strain: mean optical strain.
  moving: share of the region's pixels moving by more than `moving_sigmas` noise levels.
  """
  mean: tuple[float, float]
  magnitude: float
  direction: float
  strain: float
  moving: float

  def as_array(self) -> np.ndarray:
    return np.array([*self.mean, self.magnitude, self.direction, self.strain, self.moving], np.float32)


REGION_STATS = ("mean_dx_inward", "mean_dy", "magnitude", "direction", "strain", "moving")


@dataclasses.dataclass(frozen=True)
class Measurement:
  """Evidence of one clip.

  amplitude: (NUM_AUS, 2) peak displacement (pixels) of each AU's bump on the image-left and
    image-right half; midline AUs have one site, stored in both columns.
  head: the fitted head motion, by NUISANCE name (pixels at the crop's edge for rotation/scale).
  noise: the flow's noise level (pixels), never below the measurement's floor.
  """
  amplitude: np.ndarray
  head: dict[str, float]
  noise: float
  regions: dict[str, RegionMotion]

  def au_amplitude(self) -> np.ndarray:
    """(NUM_AUS,) the larger of each AU's two sides."""
    return self.amplitude.max(axis=1)

  def side(self, index: int, ratio: float = 3.0) -> str:
    """The subject's "left"/"right" when one image half moves `ratio` times more, else "both"."""
    left, right = self.amplitude[index]
    if not catalogue.AUS[index].bilateral:
      return "both"
    if left > ratio * right:
      return regions.subject_side("left")
    if right > ratio * left:
      return regions.subject_side("right")
    return "both"


def canonical_grid(size: int) -> np.ndarray:
  """(size, size, 2) canonical (x, y) of each pixel centre; the crop spans [-1, 1]."""
  coords = np.linspace(-1.0, 1.0, size)
  ys, xs = np.meshgrid(coords, coords, indexing="ij")
  return np.stack([xs, ys], -1)


def design(size: int, landmarks=None, shifts: bool = True) -> tuple[np.ndarray, int, list[tuple[int, int]]]:
  """Columns (size*size*2, K) of the flow model, how many lead with a free sign, and the
  (AU index, half) of each remaining (non-negative) AU column.

  Free columns: head motion (NUISANCE), then, with `shifts`, the x and y derivatives of every
  AU bump: a bump whose site sits a little off the canonical one (another face, another
  crop) is to first order the bump plus a multiple of its derivatives, so these columns take
  up the misfit that would otherwise leak into neighbouring AUs. AU columns: one per site
  (half 0: image-left or midline, 1: image-right), in pixels per unit of amplitude.
  """
  grid = canonical_grid(size)
  x, y = grid[..., 0], grid[..., 1]
  ones, zeros = np.ones_like(x), np.zeros_like(x)
  free = [np.stack([ones, zeros], -1), np.stack([zeros, ones], -1),
          np.stack([-y, x], -1), np.stack([x, y], -1)]  # rotation and scale: px at the edge
  bumps, owners = [], []
  for index, au in enumerate(catalogue.AUS):
    for half, (centre, direction) in enumerate(regions.au_sites(au, landmarks, "both")):
      dx, dy = x - centre[0], y - centre[1]
      bump = np.exp(-(dx ** 2 + dy ** 2) / (2 * au.spread ** 2))
      unit = np.asarray(direction, np.float64) / np.hypot(*direction)
      bumps.append(bump[..., None] * unit)
      owners.append((index, half))
      if shifts:
        free += [(bump * dx / au.spread)[..., None] * unit, (bump * dy / au.spread)[..., None] * unit]
  columns = free + bumps
  return np.stack([c.reshape(-1) for c in columns], -1), len(free), owners


def nnls(gram: np.ndarray, rhs: np.ndarray, free: int, tol: float = 1e-10) -> np.ndarray:
  """argmin |X b - y|^2 subject to b[free:] >= 0, from X^T X and X^T y.

  Lawson & Hanson's active-set method (1974, ch. 23), with the first `free` coefficients
  always in the passive set: each step frees the constrained coefficient with the steepest
  descent, solves the passive set's normal equations and walks back to feasibility.
  """
  k = len(rhs)
  passive = np.zeros(k, bool)
  passive[:free] = True
  b = np.zeros(k)

  def solve(mask):
    z = np.zeros(k)
    z[mask] = np.linalg.solve(gram[np.ix_(mask, mask)] + 1e-12 * np.eye(mask.sum()), rhs[mask])
    return z

  if free:
    b = solve(passive)
  for _ in range(3 * k):
    gradient = rhs - gram @ b
    candidates = ~passive
    candidates[:free] = False
    if not candidates.any() or gradient[candidates].max() <= tol:
      break
    passive[np.flatnonzero(candidates)[np.argmax(gradient[candidates])]] = True
    z = solve(passive)
    while True:
      bad = passive & (z <= 0)
      bad[:free] = False
      if not bad.any():
        break
      alpha = np.min(b[bad] / (b[bad] - z[bad]))
      b = b + alpha * (z - b)
      drop = passive & (b <= tol)
      drop[:free] = False
      passive &= ~drop
      b[drop] = 0.0
      z = solve(passive)
    b = z
  return b


class Measurer:
  """Measures clips of one crop size (the flow model is built once)."""

  def __init__(self, size: int, landmarks=None, noise_floor: float = 0.1, moving_sigmas: float = 3.0,
               shifts: bool = True, sparsity: float = 0.02):
    """landmarks: None (the canonical face), a dict of anchors, or a face's (68, 2) landmarks in
    canonical coordinates of its aligned crop: AU sites sit at that face's anchors and the
    region statistics read the regions placed on it (regions.place_regions).

    sparsity: an L1 weight on AU amplitudes, as a share of a typical bump's energy.

    Some AUs sum to another at the same site (AU12 up-and-out plus AU15 down is AU20's
    outward pull); without a cost on amplitude the fit may pick either. A small L1 cost
    (amplitudes shrink by about `sparsity` px) picks the one AU over the pair.
    """
    self.size, self.noise_floor, self.moving_sigmas = size, noise_floor, moving_sigmas
    self.columns, self.free, self.owners = design(size, landmarks, shifts)
    self.gram = self.columns.T @ self.columns
    self.penalty = np.zeros(len(self.gram))
    self.penalty[self.free:] = sparsity * np.diag(self.gram)[self.free:].mean()
    self.masks = regions.region_masks(size, landmarks=landmarks)
    self.right_half = canonical_grid(size)[..., 0] > 0

  def __call__(self, flow: np.ndarray, strain: np.ndarray | None = None) -> Measurement:
    """flow (S, S, 2) onset->apex (dx, dy) pixels; strain (S, S) or None (then 0)."""
    flow = np.asarray(flow, np.float64)
    if flow.shape != (self.size, self.size, 2):
      raise ValueError(f"flow of shape {flow.shape}; this measurer takes ({self.size}, {self.size}, 2)")
    y = flow.reshape(-1)
    free = self.free
    b = nnls(self.gram, self.columns.T @ y - self.penalty, free)
    residual = y - self.columns @ b
    noise = max(1.4826 * float(np.median(np.abs(residual - np.median(residual)))), self.noise_floor)
    amplitude = np.zeros((catalogue.NUM_AUS, 2))
    for (index, half), value in zip(self.owners, b[free:]):
      amplitude[index, half] = value
      if not catalogue.AUS[index].bilateral:
        amplitude[index, 1] = value
    head = len(NUISANCE)
    face_motion = (y - self.columns[:, :head] @ b[:head]).reshape(self.size, self.size, 2)
    strain = np.zeros(flow.shape[:2]) if strain is None else np.asarray(strain, np.float64)
    return Measurement(amplitude, dict(zip(NUISANCE, b[:head].tolist())), noise,
                       self._regions(face_motion, strain, noise))

  def _regions(self, motion, strain, noise) -> dict[str, RegionMotion]:
    inward = motion.copy()
    inward[..., 0] = np.where(self.right_half, -motion[..., 0], motion[..., 0])
    length = np.hypot(motion[..., 0], motion[..., 1])
    out = {}
    for name, mask in zip(catalogue.REGIONS, self.masks):
      mean = inward[mask].mean(axis=0)
      out[name] = RegionMotion(
          mean=(float(mean[0]), float(mean[1])), magnitude=float(length[mask].mean()),
          direction=float(np.arctan2(mean[1], mean[0])), strain=float(strain[mask].mean()),
          moving=float((length[mask] > self.moving_sigmas * noise).mean()))
    return out
