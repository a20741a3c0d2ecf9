"""Procedural faces with micro-expressions whose motion is known exactly.

A face is an analytic image f(p) over canonical coordinates p in [-1, 1]^2 (soft shapes for
the face, brows, eyes, nose and lips on a textured, lit skin). A micro-expression is a smooth
displacement field D(p): a Gaussian bump per AU site, pointing the way the catalogue says the
skin moves. Frame t shows f at Phi_t^{-1}(x), where Phi_t(p) = R_t(p + s(t) D(p)) composes the
expression's time course s(t) with a small rigid head motion R_t. Rendering f at inverted
coordinates (instead of resampling pixels) makes the onset->apex flow Phi_apex(p) - p exact.

Two things of real expressions that the flow does not carry (synthetic_me's *_folds configs):
- skin folds: FACS describes most AUs by appearance changes as well as motion (furrows,
  wrinkles, bulges; Ekman, Friesen & Hager 2002). Skin pushed along a direction bunches up
  ahead of the push into folds across it, so each AU site darkens a fine grating
  perpendicular to its motion, ahead of the site, as deep as the AU is at that frame. It is
  drawn on the skin (at canonical points), so it moves with the face; being shading, not
  motion, brightness-constancy flow sees little of it.
- asynchrony: the AUs of one expression need not peak together (Cohn & Schmidt 2004 on the
  timing of spontaneous expressions). The first AU peaks at the labelled apex; each other
  peaks up to `Capture.asynchrony` frames before it and has begun to relax by the apex.

Appearance is drawn per subject and never from the emotion, so the onset frame alone carries
no label; the label lives in the motion, the folds and their time course.
"""

import dataclasses

import numpy as np

from deft_jax import flow as flow_lib
from deft_jax.data import features
from deft_jax.facs import catalogue, emotions, regions


@dataclasses.dataclass(frozen=True)
class Capture:
  """Capture conditions of one source (camera, light, setting)."""
  name: str
  noise: float = 0.01  # sensor noise std, in [0, 1] intensity
  brightness: float = 1.0
  gray: bool = False  # SAMM is recorded in grayscale
  head_motion: float = 0.25  # px, std of the rigid drift at the apex
  blink_rate: float = 0.15  # share of clips with a blink
  amplitude: tuple[float, float] = (1.0, 2.6)  # px, AU displacement at the apex
  # Off unless a dataset config asks (synthetic_me's *_folds configs): skin folds' darkening
  # at the largest amplitude, their furrows' wavelength (canonical units; about 3 px at 64 px),
  # and how many frames before the apex an AU after the first may peak.
  folds: float = 0.0
  fold_wavelength: float = 0.1
  asynchrony: int = 0


# Three sources with MEGC2019-like differences: SMIC-HS noisier and darker, SAMM grey.
SOURCES = {
    "smic": Capture("smic", noise=0.02, brightness=0.85, head_motion=0.35, blink_rate=0.2),
    "casme2": Capture("casme2", noise=0.012, brightness=1.0),
    "samm": Capture("samm", noise=0.008, brightness=1.05, gray=True, head_motion=0.2),
}

# Fine emotions a source's negative class is drawn from (its native labels).
NEGATIVE_POOLS = {
    "smic": emotions.NEGATIVE,
    "casme2": ("disgust", "repression"),
    "samm": ("anger", "contempt", "disgust", "fear", "sadness"),
}


@dataclasses.dataclass(frozen=True)
class Subject:
  """Everything that makes one person's face their own."""
  name: str
  landmarks: dict
  centre: tuple[float, float]
  axes: tuple[float, float]
  skin: np.ndarray  # RGB in [0, 1]
  lips: np.ndarray
  brow_colour: np.ndarray
  background: np.ndarray
  light: tuple[float, float]  # intensity gradient across the face
  texture_freqs: np.ndarray  # (K, 2) cycles per canonical unit
  texture_phase: np.ndarray  # (K,)
  texture_amp: np.ndarray  # (K,)

  @property
  def points(self) -> np.ndarray:
    """(68, 2) true landmarks (iBUG 300-W order) in canonical coordinates of a still frame
    (the onset's): regions.CANONICAL_68 moved part by part onto this face's anchors."""
    return landmarks_68(self.landmarks) + np.asarray(self.centre)


def landmarks_68(anchors: dict) -> np.ndarray:
  """68 landmarks whose anchors (regions.anchors) are exactly `anchors` (image-left, as drawn).

  Each part of the canonical 68 moves with its anchor: brows, eyes and nose shift (the
  image-right brow and eye mirrored, as `render` draws them); the mouth widens to its corner,
  the corners take the corner's height, and the whole mouth shifts onto its centre; the lower
  jaw shifts so the chin anchor (between chin tip and lower lip) lands on its own.
  """
  points = regions.CANONICAL_68.copy()
  start = regions.anchors(points)

  def shift(indices, key, mirrored=()):
    d = np.asarray(anchors[key]) - np.asarray(start[key])
    points[list(indices)] += d
    points[list(mirrored)] += d * np.array([-1.0, 1.0])

  shift(range(17, 22), "brow", range(22, 27))
  shift(range(36, 42), "eye", range(42, 48))
  shift(range(27, 36), "nose")
  mouth = points[48:68]  # a view
  centre = mouth.mean(0)
  corner, want = mouth[0] - centre, np.asarray(anchors["mouth_corner"]) - np.asarray(anchors["mouth"])
  mouth[:, 0] = centre[0] + (mouth[:, 0] - centre[0]) * want[0] / corner[0]
  mouth[[0, 6], 1] += (want[1] - corner[1]) / 0.9  # two of 20 points: the mean moves a tenth as far
  mouth += np.asarray(anchors["mouth"]) - mouth.mean(0)
  chin = (points[8] + points[57]) / 2
  points[6:11] += 2 * (np.asarray(anchors["chin"]) - chin)
  return points


def make_subject(name: str, rng: np.random.Generator) -> Subject:
  jitter = lambda s: rng.normal(0.0, s, 2)
  landmarks = {k: tuple(np.asarray(v) + jitter(0.025)) for k, v in regions.CANONICAL_LANDMARKS.items()}
  k = 32
  tone = rng.uniform()
  freqs = rng.normal(0.0, 3.0, (k, 2))
  return Subject(
      name=name,
      landmarks=landmarks,
      centre=tuple(jitter(0.03)),
      axes=(rng.uniform(0.68, 0.80), rng.uniform(0.90, 1.0)),
      skin=np.clip(np.array([0.96, 0.80, 0.69]) * (1 - tone) + np.array([0.36, 0.22, 0.14]) * tone
                   + rng.normal(0, 0.03, 3), 0, 1),
      lips=rng.uniform([0.45, 0.10, 0.12], [0.80, 0.35, 0.35]),
      brow_colour=rng.uniform(0.05, 0.35, 3),
      background=rng.uniform(0.1, 0.9, 3),
      light=tuple(rng.normal(0.0, 0.15, 2)),
      texture_freqs=freqs,
      texture_phase=rng.uniform(0, 2 * np.pi, k),
      texture_amp=rng.uniform(0.02, 0.06, k) / np.sqrt(1 + np.linalg.norm(freqs, axis=1)),
  )


def _soft_ellipse(px, py, cx, cy, ax, ay, edge):
  r = np.sqrt(((px - cx) / ax) ** 2 + ((py - cy) / ay) ** 2)
  return 1.0 / (1.0 + np.exp(np.minimum((r - 1.0) / edge, 50.0)))


def render(subject: Subject, p: np.ndarray, blink: float = 0.0) -> np.ndarray:
  """Colour of the face at canonical points p (..., 2); blink in [0, 1] closes the eyes."""
  x, y = p[..., 0], p[..., 1]
  cx, cy = subject.centre
  lm = subject.landmarks
  texture = np.einsum("...k->...", subject.texture_amp * np.sin(
      2 * np.pi * (x[..., None] * subject.texture_freqs[:, 0] + y[..., None] * subject.texture_freqs[:, 1])
      + subject.texture_phase))
  light = 1.0 + subject.light[0] * x + subject.light[1] * y
  skin = subject.skin * (light * (1.0 + texture))[..., None]
  face = _soft_ellipse(x, y, cx, cy, *subject.axes, 0.04)[..., None]
  img = subject.background * (1 - face) + skin * face
  mouth_w = abs(lm["mouth_corner"][0] - lm["mouth"][0])
  parts = [  # (mask, colour)
      (_soft_ellipse(x, y, lm["mouth"][0] + cx, lm["mouth"][1] + cy, mouth_w, 0.07, 0.12), subject.lips),
      (_soft_ellipse(x, y, lm["nose"][0] + cx - 0.06, lm["nose"][1] + cy, 0.035, 0.025, 0.2), subject.skin * 0.45),
      (_soft_ellipse(x, y, lm["nose"][0] + cx + 0.06, lm["nose"][1] + cy, 0.035, 0.025, 0.2), subject.skin * 0.45),
  ]
  for side in (1, -1):
    bx, by = lm["brow"]
    ex, ey = lm["eye"]
    parts.append((_soft_ellipse(x, y, side * bx + cx, by + cy, 0.17, 0.035, 0.15), subject.brow_colour))
    opening = 0.065 * (1.0 - 0.95 * blink)
    parts.append((_soft_ellipse(x, y, side * ex + cx, ey + cy, 0.12, opening, 0.12), np.array([0.92, 0.92, 0.9])))
    parts.append((_soft_ellipse(x, y, side * ex + cx, ey + cy, 0.045, min(0.045, opening), 0.12),
                  np.array([0.12, 0.08, 0.05])))
  for mask, colour in parts:
    m = (mask * face[..., 0])[..., None]
    img = img * (1 - m) + colour * m
  return img


def displacement(subject: Subject, sites, p: np.ndarray) -> np.ndarray:
  """Sum of Gaussian bumps: sites are (centre, direction, amplitude, spread) in canonical units."""
  d = np.zeros_like(p)
  for (sx, sy), (dx, dy), amp, spread in sites:
    sx, sy = sx + subject.centre[0], sy + subject.centre[1]
    w = amp * np.exp(-((p[..., 0] - sx) ** 2 + (p[..., 1] - sy) ** 2) / (2 * spread ** 2))
    norm = np.hypot(dx, dy)
    d[..., 0] += w * dx / norm
    d[..., 1] += w * dy / norm
  return d


def fold_shading(subject: Subject, folds, p: np.ndarray, wavelength: float) -> np.ndarray:
  """Darkening in [0, 1) at canonical points p of folds (centre, direction, depth, spread).

  Each fold sits one spread ahead of its site along the motion; its furrows run across the
  motion (the shading varies along it) under a Gaussian window of the site's spread.
  """
  keep = np.ones(p.shape[:-1])
  for (sx, sy), (dx, dy), depth, spread in folds:
    if depth <= 0:
      continue
    u = np.array([dx, dy]) / np.hypot(dx, dy)
    cx, cy = sx + subject.centre[0] + spread * u[0], sy + subject.centre[1] + spread * u[1]
    rx, ry = p[..., 0] - cx, p[..., 1] - cy
    window = np.exp(-(rx ** 2 + ry ** 2) / (2 * spread ** 2))
    furrows = 0.5 * (1.0 - np.cos(2 * np.pi * (rx * u[0] + ry * u[1]) / wavelength))
    keep *= 1.0 - depth * window * furrows
  return 1.0 - keep


def _rigid(p, angle, shift):
  c, s = np.cos(angle), np.sin(angle)
  return np.stack([c * p[..., 0] - s * p[..., 1] + shift[0], s * p[..., 0] + c * p[..., 1] + shift[1]], -1)


def _grid(size: int) -> np.ndarray:
  coords = np.linspace(-1.0, 1.0, size)
  ys, xs = np.meshgrid(coords, coords, indexing="ij")
  return np.stack([xs, ys], -1)


def time_courses(num_frames: int, onset: int, peaks) -> np.ndarray:
  """(len(peaks), num_frames) activations: a smoothstep rise from the onset to each peak, then a
  slow decay to the offset (the last frame), never below 0.2 of the peak."""
  t = np.arange(num_frames)[None]
  peaks = np.asarray(peaks)[:, None]
  rise = np.clip((t - onset) / (peaks - onset), 0, 1)
  fall = np.clip(1 - 0.8 * (t - peaks) / np.maximum(num_frames - 1 - peaks, 1), 0.2, 1)
  return np.where(t <= peaks, rise * rise * (3 - 2 * rise), fall)


def choose_aus(emotion: str, rng: np.random.Generator) -> list[str]:
  """A prototype of the emotion with natural variation: an AU missing, an extra one."""
  protos = emotions.PROTOTYPES[emotion]
  aus = list(protos[rng.integers(len(protos))])
  if len(aus) > 1 and rng.random() < 0.15:
    aus.pop(rng.integers(len(aus)))
  if rng.random() < 0.15:
    extra = str(catalogue.AU_NUMBERS[rng.integers(catalogue.NUM_AUS)])
    if extra not in {a.rstrip("LR") for a in aus}:
      aus.append(extra)
  return aus


def corrupt_aus(aus: list[str], rng: np.random.Generator) -> list[str]:
  """A labelling mistake: an AU dropped, swapped for another, or a spurious one added."""
  aus = list(aus)
  kind = rng.integers(3)
  candidates = [str(n) for n in catalogue.AU_NUMBERS if str(n) not in {a.rstrip("LR") for a in aus}]
  if kind in (0, 1) and len(aus) > 1:
    aus.pop(rng.integers(len(aus)))
  if kind in (1, 2):
    aus.append(candidates[rng.integers(len(candidates))])
  return aus


def au_string(aus: list[str]) -> str:
  """FACS-style string as datasets write it: "1+2+L12"."""
  return "+".join(("L" + a[:-1]) if a.endswith("L") else a for a in aus)


def _au_vectors(aus: list[str], intensities: dict[str, int]):
  multi, inten, side = (np.zeros(catalogue.NUM_AUS, np.uint8) for _ in range(3))
  for a in aus:
    unilateral = a.endswith("L")
    i = catalogue.au_index(int(a.rstrip("L")))
    multi[i] = 1
    inten[i] = intensities.get(a, 0)
    side[i] = features.SIDE_LEFT if unilateral else features.SIDE_BOTH
  return multi, inten, side


def make_clip(subject: Subject, emotion: str, capture: Capture, rng: np.random.Generator, *,
              num_frames: int, size: int, au_label_noise: float = 0.0) -> dict:
  """Renders one clip and returns its record (see features.clip_features), minus ids.

  The face's true landmarks on the onset frame are regions.to_pixels(subject.points, size):
  the head and the AUs only move after the onset.
  """
  px_per_unit = (size - 1) / 2.0
  true_aus = choose_aus(emotion, rng)
  sites, intensities = [], {}  # sites: (centre, direction, amplitude at its peak, spread, AU's place)
  for k, a in enumerate(true_aus):
    unit = catalogue.au(int(a.rstrip("L")))
    amp_px = rng.uniform(*capture.amplitude)
    # Keep the bump invertible (|grad D| < 1): amplitude below the spread.
    amp = min(amp_px / px_per_unit, 0.9 * unit.spread)
    intensities[a] = int(np.clip(np.ceil(amp * px_per_unit / capture.amplitude[1] * 5), 1, 5))
    side = regions.image_half("left") if a.endswith("L") else "both"  # "L12": the subject's left
    for centre, direction in regions.au_sites(unit, subject.landmarks, side):
      sites.append((centre, direction, amp, unit.spread, k))

  if num_frames < 3:
    raise ValueError(f"num_frames={num_frames}: a clip needs at least onset, apex and offset (>= 3)")
  # Short clips (< 6 frames) fix onset at 0; apex stays at least two frames after it.
  onset = int(rng.integers(0, 2)) if num_frames >= 6 else 0
  apex = int(rng.integers(min(onset + 2, num_frames - 1), max(num_frames - 2, onset + 3)))
  offset = num_frames - 1
  # No draw without asynchrony, so the sets that have none are generated as before it existed.
  peaks = [apex] + [max(onset + 1, apex - int(rng.integers(capture.asynchrony + 1))) if capture.asynchrony else apex
                    for _ in true_aus[1:]]
  course, *_ = courses = time_courses(num_frames, onset, peaks)  # the first AU's is the expression's
  drift = rng.normal(0, capture.head_motion / px_per_unit, 2)
  tilt = rng.normal(0, 0.003)
  blink_frame = int(rng.integers(num_frames)) if rng.random() < capture.blink_rate else -1
  max_amp = capture.amplitude[1] / px_per_unit

  def at(i):  # the sites as they are at frame i: displacement and fold depth
    bumps = [(c, d, amp * courses[k][i], spread) for c, d, amp, spread, k in sites]
    folds = [(c, d, capture.folds * min(amp / max_amp, 1.0) * courses[k][i], spread) for c, d, amp, spread, k in sites]
    return bumps, folds

  grid = _grid(size)
  frames, flow = [], None
  for i in range(num_frames):
    shift, angle = drift * course[i], tilt * course[i]
    bumps, folds = at(i)
    c, s = np.cos(-angle), np.sin(-angle)
    q = grid - shift
    q = np.stack([c * q[..., 0] - s * q[..., 1], s * q[..., 0] + c * q[..., 1]], -1)
    p = q.copy()
    for _ in range(12):  # fixed point of p + D_i(p) = q
      p = q - displacement(subject, bumps, p)
    blink = max(0.0, 1 - abs(i - blink_frame) / 1.5) if blink_frame >= 0 else 0.0
    img = render(subject, p, blink) * (1.0 - fold_shading(subject, folds, p, capture.fold_wavelength))[..., None]
    img = img * capture.brightness
    if capture.gray:
      img = np.repeat(img.mean(-1, keepdims=True), 3, -1)
    img = img + rng.normal(0, capture.noise, img.shape)
    frames.append(np.clip(np.round(img * 255), 0, 255).astype(np.uint8))
    if i == apex:
      moved = _rigid(grid + displacement(subject, bumps, grid), angle, shift)
      flow = ((moved - grid) * px_per_unit).astype(np.float32)

  written = corrupt_aus(true_aus, rng) if rng.random() < au_label_noise else true_aus
  aus, inten, side = _au_vectors(written, intensities)
  true_multi, _, _ = _au_vectors(true_aus, intensities)
  return {
      "frames": np.stack(frames),
      "onset_index": onset,
      "apex_index": apex,
      "offset_index": offset,
      "flow": flow,
      "strain": np.asarray(flow_lib.optical_strain(flow)),
      "aus": aus,
      "au_intensity": inten,
      "au_side": side,
      "au_string": au_string(written),
      "aus_true": true_multi,
      "landmarks": subject.points.astype(np.float32),  # the onset face: no head motion yet
      "emotion": emotion,
      "source": capture.name,
  }


@dataclasses.dataclass(frozen=True)
class SourcePlan:
  """How many subjects a source has and how many clips of each composite class."""
  capture: str
  subjects: int
  counts: dict  # composite class -> clips


# MEGC2019 composite: 68 subjects, 442 clips (negative 250 / positive 109 / surprise 83).
MEGC2019 = (
    SourcePlan("smic", 16, {"negative": 70, "positive": 51, "surprise": 43}),
    SourcePlan("casme2", 24, {"negative": 88, "positive": 32, "surprise": 25}),
    SourcePlan("samm", 28, {"negative": 92, "positive": 26, "surprise": 15}),
)


def plan_clips(plan, rng: np.random.Generator):
  """Yields (subject_name, source, fine_emotion) for every clip of a dataset plan.

  Clips spread unevenly over a source's subjects (as in the real corpora), every subject
  keeps at least one, and emotions are drawn independently of who the subject is.
  """
  for source in plan:
    emotions_ = []
    for cls, n in source.counts.items():
      pool = NEGATIVE_POOLS[source.capture] if cls == "negative" else (
          ("happiness",) if cls == "positive" else ("surprise",))
      emotions_ += [pool[i % len(pool)] for i in rng.permutation(n)]
    emotions_ = [emotions_[i] for i in rng.permutation(len(emotions_))]
    weights = rng.dirichlet(np.full(source.subjects, 3.0))
    owners = np.concatenate([np.arange(source.subjects),
                             rng.choice(source.subjects, len(emotions_) - source.subjects, p=weights)])
    for owner, emotion in zip(rng.permutation(owners), emotions_):
      yield f"{source.capture}_s{owner:02d}", source.capture, emotion
