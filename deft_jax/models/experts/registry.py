"""Experts by name: one interface, so DeftModel, the batch schema, the marker tokens and
init_from iterate over whatever experts the config lists.

An expert is a module that defines `EXPERT = registry.Expert(...)`. The config names experts in
`model.experts` (order = order in the LLM's prefix); each has a node `model.<name>` with
`enabled` and, optionally, `module` (a dotted import path; default
`deft_jax.models.experts.<name>`), as big_vision names its models in config. Adding an expert
that reads an existing input is its own module and a config entry.
"""

import dataclasses
import importlib
from typing import Any, Callable

import jax
import jax.numpy as jnp

from deft_jax.data import schema



@dataclasses.dataclass(frozen=True)
class Expert:
  """What the rest of deft-jax needs to know of one expert.

  reads:       the batch key of its input (one of data/schema.py's INPUTS)
  config_from: the config node model.<name> -> a frozen config dataclass
  module:      an nn.Module class, built as module(config, dtype, param_dtype, name=name); called
               as (input, deterministic) -> (tokens (B, N, width), aux dict, e.g. {"au_logits": ...})
  input_shape: config -> the per-example shape of its input (it resizes what it is given)
  pretrained:  config -> {param path tuple (below the expert's scope): array} from local
               checkpoints the config names (SigLIP/CLIP towers), or {}
  extras:      optional batch keys (data/schema.py's OPTIONAL) passed as keyword arguments
               when a batch carries them
  """
  reads: str
  config_from: Callable[[Any], Any]
  module: type
  input_shape: Callable[[Any], tuple[int, ...]]
  pretrained: Callable[[Any], dict] = lambda config: {}
  extras: tuple[str, ...] = ()

  def __post_init__(self):
    if self.reads not in schema.INPUTS:
      raise ValueError(f"an expert reads one of {sorted(schema.INPUTS)}, not {self.reads!r}")
    unknown = set(self.extras) - set(schema.OPTIONAL)
    if unknown:
      raise ValueError(f"optional expert inputs are {sorted(schema.OPTIONAL)}, not {sorted(unknown)}")


def module_path(name: str, node) -> str:
  return node.get("module", "") or f"deft_jax.models.experts.{name}"


def load(name: str, node) -> Expert:
  """The Expert of model.<name>, from the module its config names."""
  path = module_path(name, node)
  try:
    module = importlib.import_module(path)
  except ImportError as e:
    raise ValueError(f"config.model.{name}: cannot import expert module {path!r} ({e})") from None
  expert = getattr(module, "EXPERT", None)
  if not isinstance(expert, Expert):
    raise ValueError(f"config.model.{name}: module {path!r} defines no EXPERT = registry.Expert(...)")
  return expert


def configured(model_cfg) -> list[tuple[str, Expert, Any]]:
  """(name, Expert, its config) of every enabled expert of config.model, in prefix order."""
  out = []
  for name in model_cfg.experts:
    if name not in model_cfg:
      raise ValueError(f"config.model.experts names {name!r}, but there is no config.model.{name}")
    node = model_cfg[name]
    if node.enabled:
      expert = load(name, node)
      out.append((name, expert, expert.config_from(node)))
  if not out:
    raise ValueError("config.model: every expert is disabled; enable at least one")
  return out


def markers(name: str) -> tuple[str, str]:
  """The marker tokens around an expert's tokens in the prompt."""
  return f"<{name}>", f"</{name}>"


def resize(x, size: int):
  """(..., S, S, C) at (size, size), antialiased: each expert reads its input at its own size."""
  if x.shape[-2] == size and x.shape[-3] == size:
    return x
  return jax.image.resize(x, x.shape[:-3] + (size, size, x.shape[-1]), "linear", antialias=True)


def unit_pixels(x):
  """uint8 pixels -> [0, 1] float32: the one place raw pixels are scaled (each tower then applies
  the mean and std its weights were trained with)."""
  return x.astype(jnp.float32) / 255.0



def resize_flow(flow, size: int):
  """(..., S, S, 3) u, v (pixels), strain at (size, size): displacements scale with the image
  (a 2-px motion at 64 px is 1 px at 32), strain, a ratio of lengths, does not."""
  if flow.shape[-2] == size and flow.shape[-3] == size:
    return flow
  scale = jnp.asarray([size / flow.shape[-2]] * 2 + [1.0] * (flow.shape[-1] - 2), flow.dtype)
  return resize(flow, size) * scale
