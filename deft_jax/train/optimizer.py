"""AdamW with warmup-cosine, clipping, and frozen parameters chosen by path regex."""

import re

import optax
from flax import traverse_util


def param_labels(params, frozen: tuple[str, ...]):
  """'frozen' for leaves whose "a/b/c" path matches any pattern (re.search), else 'train'."""
  patterns = [re.compile(p) for p in frozen]
  flat = traverse_util.flatten_dict(params, sep="/")
  return traverse_util.unflatten_dict(
      {k: "frozen" if any(p.search(k) for p in patterns) else "train" for k in flat}, sep="/")


def check_frozen(params, frozen: tuple[str, ...]) -> None:
  """Refuses a pattern that matches no parameter of the whole model: a typo would otherwise
  train every weight it meant to freeze, silently."""
  paths = list(traverse_util.flatten_dict(params, sep="/"))
  idle = [p for p in frozen if not any(re.search(p, k) for k in paths)]
  if idle:
    examples = ", ".join(repr(k) for k in paths[:3])
    verb = "matches" if len(idle) == 1 else "match"
    raise ValueError(f"optim.frozen: {', '.join(repr(p) for p in idle)} {verb} no parameter (each pattern is "
                     f"searched in paths like {examples}; {len(paths)} parameters)")


def split_trainable(params, frozen: tuple[str, ...], sep: str | None = None) -> tuple[dict, dict]:
  """(trainable, frozen) flat {path: leaf} dicts; paths are tuples, or joined by `sep`."""
  labels = traverse_util.flatten_dict(param_labels(params, frozen), sep=sep)
  flat = traverse_util.flatten_dict(params, sep=sep)
  return ({k: v for k, v in flat.items() if labels[k] == "train"},
          {k: v for k, v in flat.items() if labels[k] != "train"})


def make_optimizer(cfg, total_steps: int) -> optax.GradientTransformation:
  """`optax.multi_transform` + `set_to_zero` keeps frozen weights bit-exact and stateless
  (a bare `optax.masked` would let their raw gradients through)."""
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, cfg.learning_rate, min(cfg.warmup_steps, max(total_steps - 1, 1)), max(total_steps, 2))
  train = optax.chain(optax.clip_by_global_norm(cfg.grad_clip),
                      optax.adamw(schedule, weight_decay=cfg.weight_decay))
  frozen = tuple(cfg.frozen)
  return optax.multi_transform({"train": train, "frozen": optax.set_to_zero()},
                               lambda params: param_labels(params, frozen))
