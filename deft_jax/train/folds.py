"""Every fold's model trained in one compiled program: folds are a batch axis over parameters.

Leave-one-subject-out on the composite is 68 trainings of a small model on ~435 clips each; run
one after another, each pays its own compile and its own tiny, badly-used steps. Here the
parameters and optimizer state of all folds are stacked on a leading axis, and one jitted epoch
(a scan over steps) is vmapped over it. Each fold draws its training batches from the whole
dataset (kept on device) with per-fold example weights that are zero on its held-out subjects,
so a fold never trains on a clip of its own test subjects; the fold axis is sharded over the
devices. After every epoch each fold's model scores its scored clips (test, or validation) and
the logits come back, so the honest (fixed last epoch) and the optimistic (per-subject best
epoch, HTNet's protocol) predictions are both available.

Nested validation (mode "validation"): for each outer fold, one group of its training subjects
is also held out of training and scored instead of the test subjects; pooled validation scores
choose settings without a test clip ever being looked at.
"""

import dataclasses
import functools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util
from jax.sharding import NamedSharding, PartitionSpec as P

from deft_jax import cpu
from deft_jax.train import state as state_lib

MODES = ("test", "validation")
BALANCE = ("sample", "corpus", "none")


@dataclasses.dataclass(frozen=True)
class FoldPlan:
  """F folds over N clips: which clips each fold trains on and which it scores."""
  names: tuple[str, ...]  # the held-out (test) subjects of each fold, joined by '+'
  train: np.ndarray  # (F, N) bool
  scored: np.ndarray  # (F, N) bool: test clips (mode test) or validation clips
  test: np.ndarray  # (F, N) bool: the fold's test subjects' clips
  mode: str

  @property
  def num_folds(self) -> int:
    return len(self.names)


def plan(subjects, mode: str = "test", num_folds: int = 0, val_groups: int = 5, seed: int = 0,
         subject_list=(), train_share: float = 1.0) -> FoldPlan:
  """Folds over the clips' `subjects`: one per subject (num_folds 0: LOSO) or num_folds groups
  of subjects (a seeded shuffle); subject_list limits the test folds to those subjects.
  train_share < 1 trains each fold on that share of its training subjects (drawn by the seed,
  at least one), the rest neither trained on nor scored: a learning curve over subjects."""
  if mode not in MODES:
    raise ValueError(f"folds.mode must be one of {MODES}, got {mode!r}")
  if not 0.0 < train_share <= 1.0:
    raise ValueError(f"folds.train_share={train_share}: needs a share in (0, 1]")
  subjects = np.asarray(subjects)
  names = sorted(set(subjects.tolist()))
  unknown = sorted(set(subject_list) - set(names))
  if unknown:
    raise ValueError(f"folds.subjects: subject(s) {unknown} have no clips; known: {names[:5]} ...")
  if num_folds:
    if not 2 <= num_folds <= len(names):
      raise ValueError(f"folds.num_folds={num_folds}: needs 2..{len(names)} (the subjects)")
    order = np.random.default_rng(seed).permutation(names)
    groups = [sorted(order[i::num_folds].tolist()) for i in range(num_folds)]
  else:
    groups = [[s] for s in names]
  if subject_list:
    groups = [g for g in groups if set(g) & set(subject_list)]
  test = np.stack([np.isin(subjects, g) for g in groups])
  train, scored = ~test, test
  if mode == "validation":
    if val_groups < 2:
      raise ValueError(f"folds.val_groups={val_groups}: needs at least 2")
    # A fixed assignment of subjects to validation groups, independent of the run's seed.
    order = np.random.default_rng(12345).permutation(names)
    vgroups = [set(order[i::val_groups].tolist()) for i in range(val_groups)]
    scored = []
    for f, g in enumerate(groups):
      val = vgroups[f % val_groups] - set(g) or vgroups[(f + 1) % val_groups] - set(g)
      scored.append(np.isin(subjects, sorted(val)))
    scored = np.stack(scored)
    train = ~test & ~scored
  if train_share < 1.0:
    train = _keep_share(subjects, train, train_share, seed)
  if not train.any(1).all():
    raise ValueError("a fold has no training clips left")
  return FoldPlan(tuple("+".join(g) for g in groups), train, scored, test, mode)


def with_extra_training(plan: FoldPlan, n: int) -> FoldPlan:
  """`plan` over N clips extended to N + n: the n clips appended (another corpus's) train in every
  fold and are never held out or scored."""
  ones, zeros = np.ones((plan.num_folds, n), bool), np.zeros((plan.num_folds, n), bool)
  return dataclasses.replace(plan, train=np.concatenate([plan.train, ones], 1),
                             scored=np.concatenate([plan.scored, zeros], 1), test=np.concatenate([plan.test, zeros], 1))


def _keep_share(subjects, train: np.ndarray, share: float, seed: int) -> np.ndarray:
  """Each fold's training mask limited to a seeded draw of round(share x n) of its n training
  subjects (at least one)."""
  rng = np.random.default_rng([seed, 1])
  kept = []
  for row in train:
    names = sorted(set(subjects[row].tolist()))
    keep = rng.permutation(names)[:max(1, round(share * len(names)))]
    kept.append(row & np.isin(subjects, keep))
  return np.stack(kept)


def sampling_weights(train: np.ndarray, labels: np.ndarray, balance: str, corpora=None) -> np.ndarray:
  """(F, N) probabilities of drawing each clip into a fold's batch: 0 outside its training
  clips; "sample" makes every class equally likely (inverse class frequency in the fold);
  "corpus" does so within each corpus (`corpora`: one name per clip), each corpus keeping its
  share of the fold's training clips, so that a corpus's rare classes are not drawn only as
  often as the other corpora's clips of that class make them."""
  if balance not in BALANCE:
    raise ValueError(f"folds.balance must be one of {BALANCE}, got {balance!r}")
  w = train.astype(np.float64)
  onehot = np.eye(labels.max() + 1)[labels]  # (N, C)
  if balance == "sample":
    counts = w @ onehot  # (F, C)
    w = w / np.maximum(counts @ onehot.T, 1.0)
  elif balance == "corpus":
    if corpora is None or len(corpora) != len(labels):
      raise ValueError("folds.balance='corpus' needs each clip's corpus")
    for corpus in sorted(set(corpora)):
      cols = np.asarray(corpora) == corpus
      counts = w[:, cols] @ onehot[cols]  # (F, C) the corpus's training clips per class
      share = w[:, cols].sum(1, keepdims=True)  # its training clips
      present = np.maximum((counts > 0).sum(1, keepdims=True), 1)
      w[:, cols] *= share / present / np.maximum(counts @ onehot[cols].T, 1.0)
  return (w / w.sum(1, keepdims=True)).astype(np.float32)


def scored_indices(scored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(F, M) indices of each fold's scored clips, padded with 0, and their (F, M) mask."""
  m = max(int(scored.sum(1).max()), 1)
  idx = np.zeros((len(scored), m), np.int32)
  mask = np.zeros((len(scored), m), bool)
  for f, row in enumerate(scored):
    where = np.flatnonzero(row)
    idx[f, :len(where)], mask[f, :len(where)] = where, True
  return idx, mask


@dataclasses.dataclass(frozen=True)
class Augment:
  """Per-clip training augmentation, inside the compiled step.

  flip: mirror left-right with probability 1/2; the horizontal flow u changes sign (for the
    per-clip min-max flow of the composite, u in [-1, 1] maps to -u exactly).
  shift: translation up to this many pixels (uniform, each axis); scale: zoom by up to this
    share. Applied alike to flow and face (bilinear, zero outside).
  rotate: rotation about the centre by up to this many degrees (uniform), flow and face alike;
    the flow's vectors (u, v) turn with the image. On per-clip min-max flow this treats 0 as
    "no motion", which it is only approximately; for small angles the error is small.
  erase: with probability 1/2, one square of this many flow pixels (face alike, at its scale)
    at a uniform place is filled with the clip's per-channel median, for the flow the level of
    the still skin (Zhong et al. 2020, "Random Erasing"); 0: off.
  noise: Gaussian noise of this standard deviation added to every flow value (u, v in [-1, 1],
    the composite's scale), drawn afresh per clip and pixel; the face untouched; 0: off.
  mixup: Beta(mixup, mixup) mixing of each clip with another of the batch (0: off; Zhang et
    al. 2018, "mixup"): flow and face mixed, and `mix_weight` / `mix_label` added for the
    emotion targets. The weight is folded to >= 1/2 so that the first clip dominates and its
    answer text stays the LM term's target.
  """
  flip: bool = True
  shift: float = 0.0
  scale: float = 0.0
  rotate: float = 0.0
  erase: float = 0.0
  noise: float = 0.0
  mixup: float = 0.0

  def __call__(self, batch, rng):
    flow = batch["flow"]
    face = batch["face"].astype(jnp.float32) if "face" in batch else None  # absent: no model reads it
    kf, ka = jax.random.split(rng)
    boxes = batch.get("region_boxes")
    if self.flip:
      flip = jax.random.bernoulli(kf, 0.5, (flow.shape[0],))[:, None, None, None]
      mirrored = mirror({"flow": flow, **({} if face is None else {"face": face}),
                         **({} if boxes is None else {"region_boxes": boxes})})
      flow = jnp.where(flip, mirrored["flow"], flow)
      face = None if face is None else jnp.where(flip, mirrored["face"], face)
      boxes = None if boxes is None else jnp.where(flip[:, :, 0], mirrored["region_boxes"], boxes)
    if self.shift or self.scale:
      u = jax.random.uniform(ka, (flow.shape[0], 3), minval=-1.0, maxval=1.0)
      flow, face = _zoom_shift(flow, face, 1.0 + self.scale * u[:, 0], self.shift * u[:, 1:])
    if self.rotate:  # own keys, so that the draws above are those without it
      angle = jnp.deg2rad(self.rotate) * jax.random.uniform(jax.random.fold_in(rng, 3), (flow.shape[0],),
                                                            minval=-1.0, maxval=1.0)
      flow = jax.vmap(functools.partial(_rotate, vectors=True))(flow, angle)
      face = None if face is None else jax.vmap(_rotate)(face, angle)
    if self.erase:
      k_on, k_at = jax.random.split(jax.random.fold_in(rng, 4))
      on = jax.random.bernoulli(k_on, 0.5, (flow.shape[0],))
      side = self.erase / flow.shape[1]  # the square's side as a share of the image
      corner = jax.random.uniform(k_at, (flow.shape[0], 2), maxval=1.0 - side)  # (y, x) shares
      erase = jax.vmap(functools.partial(_erase, side=side))
      flow = erase(flow, corner, on)
      face = None if face is None else erase(face, corner, on)
    if self.noise:
      flow = flow + self.noise * jax.random.normal(jax.random.fold_in(rng, 5), flow.shape, flow.dtype)
    if self.mixup:
      k_weight, k_perm = jax.random.split(jax.random.fold_in(rng, 2))  # kf, ka as without mixing
      n = flow.shape[0]
      weight = jax.random.beta(k_weight, self.mixup, self.mixup, (n,))
      weight = jnp.maximum(weight, 1.0 - weight)
      other = jax.random.permutation(k_perm, n)

      def mix(x):
        w = weight.reshape((n,) + (1,) * (x.ndim - 1)).astype(x.dtype)
        return w * x + (1 - w) * x[other]

      flow, face = mix(flow), None if face is None else mix(face)
      batch = {**batch, "mix_weight": weight, "mix_label": batch["label"][other]}
    out = {**batch, "flow": flow, **({} if boxes is None else {"region_boxes": boxes})}
    return out if face is None else {**out, "face": _pixels(face)}


def shifted(batch, shift):
  """The batch moved by `shift` (dy, dx) flow pixels; the face alike at its own scale."""
  n = batch["flow"].shape[0]
  face = batch["face"].astype(jnp.float32) if "face" in batch else None
  flow, face = _zoom_shift(batch["flow"], face, jnp.ones(n), jnp.broadcast_to(jnp.asarray(shift, jnp.float32), (n, 2)))
  return {**batch, "flow": flow, **({} if face is None else {"face": _pixels(face)})}


def scoring_views(batch, flip: bool, shift: float) -> list:
  """What a clip is scored as: itself, moved by `shift` pixels each way along each axis (0: not),
  and the mirror of each of those (flip)."""
  views = [batch] + [shifted(batch, d) for d in ((shift, 0.0), (-shift, 0.0), (0.0, shift), (0.0, -shift)) if shift]
  return views + [mirror(v) for v in views] if flip else views


def mirror(batch):
  """The batch mirrored left-right: flow and face flipped, the horizontal flow u negated, region
  boxes (canonical x0, y0, x1, y1) reflected."""
  out = {**batch, "flow": batch["flow"][:, :, ::-1] * jnp.array([-1.0, 1.0, 1.0], batch["flow"].dtype)}
  if "face" in batch:
    out["face"] = batch["face"][:, :, ::-1]
  if "region_boxes" in batch:
    out["region_boxes"] = batch["region_boxes"][..., jnp.array([2, 1, 0, 3])] * jnp.array([-1.0, 1.0, -1.0, 1.0])
  return out


def _pixels(face):
  return jnp.clip(jnp.round(face), 0, 255).astype(jnp.uint8)


def _zoom_shift(flow, face, zoom, shift):
  """Each clip zoomed by zoom (N,) and moved by shift (N, 2) flow pixels; the face (float or
  None) alike, its shift scaled to its size."""
  flow_out = jax.vmap(_affine)(flow, zoom, shift)
  if face is None:
    return flow_out, None
  return flow_out, jax.vmap(_affine)(face, zoom, shift * face.shape[1] / flow.shape[1])


def _affine(image, zoom, shift):
  """Zoom about the centre, then shift (pixels), keeping the shape."""
  size = jnp.array(image.shape[:2], jnp.float32)
  translation = (1.0 - zoom) * size / 2 + shift
  return jax.image.scale_and_translate(image, image.shape, (0, 1), jnp.stack([zoom, zoom]), translation,
                                       "linear", antialias=False)


def _rotate(image, angle, vectors=False):
  """The image turned by `angle` radians about its centre (x towards y: clockwise on screen,
  where y points down), bilinear, zero outside; with `vectors`, channels 0 and 1 (u, v) turn
  with it."""
  h, w = image.shape[:2]
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  y, x = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32) - (h - 1) / 2,
                      jnp.arange(w, dtype=jnp.float32) - (w - 1) / 2, indexing="ij")
  # an output pixel p reads the input at R(-angle) p: the content moves by R(angle)
  source = jnp.stack([-sin * x + cos * y + (h - 1) / 2, cos * x + sin * y + (w - 1) / 2])
  out = jnp.stack([jax.scipy.ndimage.map_coordinates(image[..., c], source, order=1, mode="constant")
                   for c in range(image.shape[-1])], -1)
  if vectors:
    u, v = out[..., 0], out[..., 1]
    out = out.at[..., 0].set(cos * u - sin * v).at[..., 1].set(sin * u + cos * v)
  return out


def _erase(image, corner, on, side):
  """`image` with the square at `corner` (y, x shares) of `side` (share) filled with its
  per-channel median where `on`."""
  h, w = image.shape[:2]
  y = (jnp.arange(h) + 0.5) / h
  x = (jnp.arange(w) + 0.5) / w
  inside = (((y >= corner[0]) & (y < corner[0] + side))[:, None]
            & ((x >= corner[1]) & (x < corner[1] + side))[None, :] & on)
  return jnp.where(inside[..., None], jnp.median(image, axis=(0, 1)), image)


def one_cpu_device_per_core() -> None:
  """On CPU, one XLA device per core, so that the fold axis spreads over every core (an XLA CPU
  device runs most of its ops on one thread). Call before any device is touched; does nothing
  when XLA_FLAGS already sets a device count. Accelerators are unaffected."""
  flags = os.environ.get("XLA_FLAGS", "")
  if "xla_force_host_platform_device_count" not in flags:
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={cpu.usable_cores()}".strip()


def fold_mesh(devices=None) -> jax.sharding.Mesh:
  devices = jax.devices() if devices is None else devices
  return jax.sharding.Mesh(np.asarray(devices), ("folds",))


@dataclasses.dataclass(frozen=True)
class Schedule:
  batch_size: int
  steps_per_epoch: int
  epochs: int
  test_flip: bool = False  # score each clip as the mean of its own and its mirror's logits
  test_shift: float = 0.0  # and of its copies moved this many pixels up, down, left and right
  # Scoring weights: an exponential moving average of the params over steps with this decay
  # (Polyak & Juditsky 1992), kept beside them; 0: the params of the last step.
  ema: float = 0.0


def make_epoch(spec, tx, augment: Augment, schedule: Schedule):
  """epoch(variables, opt_state, ema, data, weights, idx, key, base) for ONE fold -> (variables,
  opt_state, ema, mean loss, scored logits (M, C)); the fold program vmaps it. `base` is the
  shared frozen tree (Spec.base), read by every step and never differentiated; `ema` is the
  params' moving average (schedule.ema; None when off), which then scores the clips."""

  def step(carry, key, base):
    variables, opt_state, ema, data, weights = carry
    k_idx, k_aug, k_drop = jax.random.split(key, 3)
    n = weights.shape[0]
    rows = jax.random.choice(k_idx, n, (schedule.batch_size,), p=weights)
    batch = augment(jax.tree.map(lambda x: x[rows], data), k_aug)

    def loss_fn(params):
      return spec.loss({**variables, "params": state_lib.merge_params(params, base)}, batch, k_drop)

    (loss, (_, updated)), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])
    updates, opt_state = tx.update(grads, opt_state, variables["params"])
    variables = {**variables, **updated, "params": optax.apply_updates(variables["params"], updates)}
    if ema is not None:
      ema = optax.incremental_update(variables["params"], ema, 1.0 - schedule.ema)
    return (variables, opt_state, ema, data, weights), loss

  def epoch(variables, opt_state, ema, data, weights, idx, key, base=None):
    keys = jax.random.split(key, schedule.steps_per_epoch)
    (variables, opt_state, ema, _, _), loss = jax.lax.scan(functools.partial(step, base=base),
                                                           (variables, opt_state, ema, data, weights), keys)
    scored = jax.tree.map(lambda x: x[idx], data)
    views = scoring_views(scored, schedule.test_flip, schedule.test_shift)
    whole = {**variables, "params": state_lib.merge_params(variables["params"] if ema is None else ema, base)}
    logits = sum(spec.logits(whole, v) for v in views) / len(views)
    return variables, opt_state, ema, loss.mean(), logits.astype(jnp.float32)

  return epoch


def init_folds(spec, tx):
  """init(keys (F,), start) -> (variables, opt_state) of F folds: each fold's seeded init less
  the shared base's leaves, with `start` ({path: array}, Spec.start) put in every fold."""
  shared = set(traverse_util.flatten_dict(spec.base or {}))

  def init(keys, start):
    variables = jax.vmap(spec.init)(jax.vmap(lambda k: jax.random.fold_in(k, 0))(keys))
    params = {k: v for k, v in traverse_util.flatten_dict(variables["params"]).items() if k not in shared}
    params.update({k: jnp.broadcast_to(v, (len(keys),) + v.shape).astype(params[k].dtype) for k, v in start.items()})
    variables = {**variables, "params": traverse_util.unflatten_dict(params)}
    return variables, jax.vmap(tx.init)(variables["params"])

  return init


def train_folds(spec, tx, data: dict, weights: np.ndarray, idx: np.ndarray, schedule: Schedule,
                augment: Augment, seed: int, mesh=None, fold_ids=None, on_epoch=None, keep_params=False):
  """Trains one model per row of `weights` (F, N) in one program; returns the (E, F, M, C)
  logits of each fold's `idx` (F, M) clips after every epoch and the (E, F) mean train loss
  (and with `keep_params`, the trained params, or their moving average where schedule.ema:
  host arrays (F, ...) by path tuple).

  The fold axis is padded to a multiple of the mesh's devices (copies of fold 0, dropped
  after) and sharded over them; `data` and the spec's frozen `base` are replicated, and each
  fold's params and optimizer state hold only what trains. Fold f's random draws depend only on
  (seed, fold_ids[f]) (default f), so a fold's model is the same whether trained here beside
  the others or alone.
  """
  mesh = mesh or fold_mesh()
  f = len(weights)
  pad = -f % mesh.size
  fold_ids = np.arange(f) if fold_ids is None else np.asarray(fold_ids)
  weights, idx, fold_ids = (np.concatenate([x, np.repeat(x[:1], pad, 0)]) for x in (weights, idx, fold_ids))
  folds, replicated = NamedSharding(mesh, P("folds")), NamedSharding(mesh, P())
  fold_keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(seed), i))(jnp.asarray(fold_ids))

  start = jax.device_put(dict(spec.start or {}), replicated)
  base = jax.device_put(spec.base or {}, replicated)
  variables, opt_state = jax.jit(init_folds(spec, tx), out_shardings=folds)(jax.device_put(fold_keys, folds), start)
  ema = jax.tree.map(jnp.copy, variables["params"]) if schedule.ema else None
  data = jax.device_put(data, replicated)
  weights, idx = jax.device_put(jnp.asarray(weights), folds), jax.device_put(jnp.asarray(idx), folds)
  epoch = jax.jit(jax.vmap(make_epoch(spec, tx, augment, schedule), in_axes=(0, 0, 0, None, 0, 0, 0, None)),
                  in_shardings=(folds, folds, folds, replicated, folds, folds, folds, replicated),
                  out_shardings=(folds, folds, folds, folds, folds), donate_argnums=(0, 1, 2))
  logits, losses = [], []
  for e in range(schedule.epochs):
    keys = jax.device_put(jax.vmap(lambda k: jax.random.fold_in(k, e + 1))(fold_keys), folds)
    variables, opt_state, ema, loss, out = epoch(variables, opt_state, ema, data, weights, idx, keys, base)
    logits.append(np.asarray(out)[:f])
    losses.append(np.asarray(loss)[:f])
    if on_epoch:
      on_epoch(e, losses[-1])
  if keep_params:
    kept = variables["params"] if ema is None else ema
    params = {k: np.asarray(v)[:f] for k, v in traverse_util.flatten_dict(kept).items()}
    return np.stack(logits), np.stack(losses), params
  return np.stack(logits), np.stack(losses)


def steps_per_epoch(train: np.ndarray, batch_size: int) -> int:
  """One nominal pass over a fold's training clips (the mean over folds)."""
  return max(1, math.ceil(train.sum(1).mean() / batch_size))
