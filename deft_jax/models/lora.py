"""LoRA: the adapted linear layer, freezing, merging and the peft on-disk format.

LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models"):
y = x W + (alpha / r) * dropout(x) A B, with B initialised to zero so training starts from the
base model. Parameters are named `lora_a` (in, r) and `lora_b` (r, out) next to the `kernel` of
the layer they adapt; every LoRA path contains "lora_" and no base path does.
"""

import dataclasses
import functools
import json
import os
import re
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import safetensors.numpy
from flax import traverse_util

from deft_jax.models import layer_paths
from deft_jax.train import sharding as sharding_lib

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_PEFT_PREFIX = "base_model.model."
# Grown vocabulary rows (llm.LlmConfig.added_tokens) as peft's trainable tokens: our leaf ->
# (peft's trainable_token_indices key, HF module, whether our leaf is the transpose of its rows).
_GROWN = {"embed_tokens/added_embedding": ("embed_tokens", "model.embed_tokens", False),
          "added_lm_head": ("lm_head", "lm_head", True)}
_TOKEN_DELTA = "token_adapter.trainable_tokens_delta"


@dataclasses.dataclass(frozen=True)
class LoraConfig:
  """Which linear layers get an adapter (regex full-matched on "a/b/c" module paths), and how."""

  rank: int = 8
  alpha: float = 16.0
  dropout: float = 0.0
  targets: str = r".*(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"

  def __post_init__(self):
    if self.rank < 1:
      raise ValueError(f"LoRA rank must be >= 1, got {self.rank}")
    if not 0.0 <= self.dropout < 1.0:
      raise ValueError(f"LoRA dropout must be in [0, 1), got {self.dropout}")
    re.compile(self.targets)

  @property
  def scale(self) -> float:
    return self.alpha / self.rank

  def applies_to(self, module_path: str) -> bool:
    return re.fullmatch(self.targets, module_path) is not None


class LoraLinear(nn.Module):
  """x @ kernel (+ bias), plus a LoRA branch when `lora` targets this module's path."""

  features: int
  axes: tuple[str, str]  # logical names of the (in, out) kernel axes
  use_bias: bool = False
  lora: LoraConfig | None = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  kernel_init: Any = nn.initializers.normal(0.02)

  @nn.compact
  def __call__(self, x, deterministic: bool = True):
    in_axis, out_axis = self.axes
    kernel = self.param(
        "kernel", nn.with_logical_partitioning(self.kernel_init, self.axes),
        (x.shape[-1], self.features), self.param_dtype)
    x = x.astype(self.dtype)
    y = jnp.dot(x, kernel.astype(self.dtype))
    if self.use_bias:
      bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, (out_axis,)),
                        (self.features,), self.param_dtype)
      y = y + bias.astype(self.dtype)
    if self.lora is not None and self.lora.applies_to("/".join(self.path)):
      r = self.lora.rank
      # peft initialises A with kaiming-uniform(a=sqrt(5)), i.e. U(-1/sqrt(in), 1/sqrt(in)).
      a = self.param("lora_a", nn.with_logical_partitioning(
          nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform"), (in_axis, "lora_rank")),
                     (x.shape[-1], r), self.param_dtype)
      b = self.param("lora_b", nn.with_logical_partitioning(
          nn.initializers.zeros, ("lora_rank", out_axis)), (r, self.features), self.param_dtype)
      h = nn.Dropout(self.lora.dropout)(x, deterministic=deterministic)
      y = y + low_rank(h, a.astype(self.dtype), b.astype(self.dtype), self.lora.scale)
    return y


def _flat(params) -> dict[str, Any]:
  return traverse_util.flatten_dict(params, sep="/")


def _nest(flat: dict[str, Any]):
  return traverse_util.unflatten_dict(flat, sep="/")


def is_lora(path: str) -> bool:
  return "lora_" in path


def split(params) -> tuple[Any, Any]:
  """(base, adapter) parameter trees; the adapter holds only LoRA leaves."""
  flat = _flat(params)
  base = {k: v for k, v in flat.items() if not is_lora(k)}
  adapter = {k: v for k, v in flat.items() if is_lora(k)}
  return _nest(base), _nest(adapter)


def freeze(tx: optax.GradientTransformation, trainable: str = "lora_") -> optax.GradientTransformation:
  """Applies `tx` to leaves whose path matches `trainable` (re.search); others get zero updates.

  `optax.multi_transform` + `set_to_zero` keeps frozen weights bit-exact and gives them no
  optimizer state (a bare `optax.masked` would pass their raw gradients through).
  """
  pattern = re.compile(trainable)

  def labels(params):
    flat = _flat(params)
    return _nest({k: "train" if pattern.search(k) else "frozen" for k in flat})

  return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def low_rank(h, a, b, scale: float):
  """(h @ a) @ b * scale, its backward written out: autodiff's own has XLA:CPU lay the output
  gradient out transposed for b's gradient, a transposing copy of the (tokens, out) gradient
  fused into the scanned layer's backward (~0.5 s of SmolLM2's 2.9 s LoRA step)."""
  return _low_rank_fwd(h, a, b, scale)[0]


def _low_rank_fwd(h, a, b, scale):
  p = (h @ a) * jnp.asarray(scale, h.dtype)
  return p @ b, (h, a, b, p)


def _low_rank_bwd(scale, res, g):
  h, a, b, p = res
  lead = g.shape[:-1]
  g2, h2, p2 = g.reshape(-1, g.shape[-1]), h.reshape(-1, h.shape[-1]), p.reshape(-1, p.shape[-1])
  dp = (g2 @ b.T) * jnp.asarray(scale, g.dtype)  # (tokens, r)
  return (dp @ a.T).reshape(*lead, a.shape[0]), h2.T @ dp, p2.T @ g2


low_rank.defvjp(_low_rank_fwd, _low_rank_bwd)


def _delta(a, b, scale):
  return (a.astype(jnp.float32) @ b.astype(jnp.float32)) * scale


def merge(params, config: LoraConfig):
  """Folds every adapter into its kernel and drops the LoRA leaves (for a model with lora=None)."""
  flat = _flat(params)
  out = {k: v for k, v in flat.items() if not is_lora(k)}
  for k in flat:
    if k.endswith("/lora_a"):
      module = k[: -len("/lora_a")]
      kernel = flat[f"{module}/kernel"]
      out[f"{module}/kernel"] = (kernel.astype(jnp.float32)
                                 + _delta(flat[k], flat[f"{module}/lora_b"], config.scale)).astype(kernel.dtype)
  return _nest(out)


def unmerge(merged, adapter, config: LoraConfig):
  """Inverse of `merge`: subtracts each adapter from its kernel and re-attaches the LoRA leaves."""
  flat, flat_adapter = _flat(merged), _flat(adapter)
  out = dict(flat)
  for k in flat_adapter:
    if k.endswith("/lora_a"):
      module = k[: -len("/lora_a")]
      kernel = flat[f"{module}/kernel"]
      out[f"{module}/kernel"] = (kernel.astype(jnp.float32)
                                 - _delta(flat_adapter[k], flat_adapter[f"{module}/lora_b"], config.scale)
                                 ).astype(kernel.dtype)
  return _nest({**out, **flat_adapter})


def hf_module_name(module_path: str) -> str:
  """Flax module path -> Hugging Face module name ("layers_3/mlp/up_proj" -> "model.layers.3.mlp.up_proj")."""
  name = re.sub(r"(^|/)layers_(\d+)(?=/|$)", r"\1layers.\2", module_path).replace("/", ".")
  return name if name.startswith("lm_head") else f"model.{name}"


def flax_module_path(hf_name: str) -> str:
  """Inverse of `hf_module_name`."""
  name = hf_name.removeprefix("model.") if not hf_name.startswith("lm_head") else hf_name
  return re.sub(r"(^|\.)layers\.(\d+)(?=\.|$)", r"\1layers_\2", name).replace(".", "/")


def save_peft(path: str | os.PathLike, params, config: LoraConfig, *,
              base_model_name_or_path: str | None = None) -> None:
  """Writes the adapter as peft does (adapter_config.json + adapter_model.safetensors).

  Grown vocabulary rows go in as peft's trainable tokens (rows V.. of embed_tokens, and of an
  untied lm_head): apply the adapter to the base after `resize_token_embeddings(V + added)`.
  """
  os.makedirs(path, exist_ok=True)
  everything = _flat(params)
  flat = layer_paths.unstack(_flat(jax.device_get(split(params)[1])))
  if not flat:
    raise ValueError("params hold no LoRA leaves; nothing to export")
  tensors, modules, token_indices = {}, [], {}
  for leaf, (key, module, transposed) in _GROWN.items():
    if leaf in everything:
      rows = np.asarray(jax.device_get(everything[leaf]))
      rows = rows.T if transposed else rows
      vocab = everything["embed_tokens/embedding"].shape[0]
      tensors[f"{_PEFT_PREFIX}{module}.{_TOKEN_DELTA}"] = np.ascontiguousarray(rows)
      token_indices[key] = list(range(vocab, vocab + rows.shape[0]))
  for k, v in flat.items():
    module, leaf = k.rsplit("/", 1)
    name = hf_module_name(module)
    # peft's nn.Linear layout: lora_A.weight (r, in), lora_B.weight (out, r).
    peft_leaf = {"lora_a": "lora_A", "lora_b": "lora_B"}[leaf]
    tensors[f"{_PEFT_PREFIX}{name}.{peft_leaf}.weight"] = np.ascontiguousarray(np.asarray(v).T)
    if leaf == "lora_a":
      modules.append(name)
  safetensors.numpy.save_file(tensors, os.path.join(path, ADAPTER_WEIGHTS), metadata={"format": "pt"})
  adapter_config = {
      "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_model_name_or_path,
      "r": config.rank, "lora_alpha": config.alpha, "lora_dropout": config.dropout,
      # Exact module names, so the adapted set is the same whatever the regex was.
      "target_modules": "^(" + "|".join(re.escape(m) for m in sorted(modules)) + ")$",
      "bias": "none", "fan_in_fan_out": False, "use_rslora": False, "use_dora": False,
      "modules_to_save": None, "init_lora_weights": True, "inference_mode": True,
      "rank_pattern": {}, "alpha_pattern": {}, "trainable_token_indices": token_indices or None,
  }
  with open(os.path.join(path, ADAPTER_CONFIG), "w") as f:
    json.dump(adapter_config, f, indent=2)


def _check_peft_config(cfg: dict, path) -> None:
  unsupported = {
      "peft_type": cfg.get("peft_type", "LORA") != "LORA",
      "use_rslora": bool(cfg.get("use_rslora")),
      "use_dora": bool(cfg.get("use_dora")),
      "fan_in_fan_out": bool(cfg.get("fan_in_fan_out")),
      "bias": cfg.get("bias", "none") != "none",
      "modules_to_save": bool(cfg.get("modules_to_save")),
      "rank_pattern": bool(cfg.get("rank_pattern")),
      "alpha_pattern": bool(cfg.get("alpha_pattern")),
  }
  bad = [f"{k}={cfg.get(k)!r}" for k, v in unsupported.items() if v]
  if bad:
    raise ValueError(f"{path}: unsupported peft adapter settings: {', '.join(bad)}")


def load_peft(path: str | os.PathLike, params) -> tuple[LoraConfig, Any]:
  """Reads a peft LoRA adapter onto base `params`; each LoRA leaf follows its kernel's sharding.

  Returns the LoraConfig (targets = exactly the adapted modules) and base + adapter params.
  """
  with open(os.path.join(path, ADAPTER_CONFIG)) as f:
    cfg = json.load(f)
  _check_peft_config(cfg, path)
  flat = _flat(params)
  kernels = {}  # per-layer (shape, dtype) of every kernel
  for k, v in flat.items():
    if k.endswith("/kernel"):
      scanned = layer_paths.is_scanned(k)
      kernels.update({layer_paths.layer_path(k, i): (v.shape[1:], v.dtype) for i in range(v.shape[0])} if scanned
                     else {k: (v.shape, v.dtype)})
  weights = os.path.join(path, ADAPTER_WEIGHTS)
  values, errors, grown = {}, [], {}
  indices = cfg.get("trainable_token_indices") or {}
  indices = {"embed_tokens": indices} if isinstance(indices, list) else indices
  token_deltas = {f"{_PEFT_PREFIX}{module}.{_TOKEN_DELTA}": (leaf, key, t) for leaf, (key, module, t) in _GROWN.items()}
  with safetensors.safe_open(weights, framework="numpy") as sf:
    for key in sf.keys():
      if key in token_deltas:  # grown vocabulary rows
        leaf, value, error = _token_rows(key, sf.get_tensor(key), token_deltas[key], flat, indices)
        if error:
          errors.append(error)
        else:
          grown[leaf] = value
        continue
      m = re.fullmatch(re.escape(_PEFT_PREFIX) + r"(.+)\.(lora_A|lora_B)(?:\.default)?\.weight", key)
      if m is None:
        errors.append(f"unexpected key {key}")
        continue
      module = flax_module_path(m.group(1))
      if f"{module}/kernel" not in kernels:
        errors.append(f"{key}: model has no linear layer {module}")
        continue
      shape, dtype = kernels[f"{module}/kernel"]
      value = sf.get_tensor(key).T
      leaf, dim = ("lora_a", 0) if m.group(2) == "lora_A" else ("lora_b", 1)
      if value.shape[dim] != shape[dim] or value.shape[1 - dim] != cfg["r"]:
        errors.append(f"{key}: shape {value.T.shape} does not fit kernel {shape} with r={cfg['r']}")
        continue
      values[f"{module}/{leaf}"] = value.astype(dtype)
  modules = sorted({k.rsplit("/", 1)[0] for k in values})
  errors += [f"{m}: lora_{a} without lora_{b}" for m in modules for a, b in (("A", "B"), ("B", "A"))
             if f"{m}/lora_{a.lower()}" in values and f"{m}/lora_{b.lower()}" not in values]
  out, targets = {**flat, **grown}, set()
  for k in flat:  # each adapted kernel of the model, stacked (scanned) or one layer's
    if not k.endswith("/kernel"):
      continue
    module = k[: -len("/kernel")]
    scanned = layer_paths.is_scanned(module)
    layers = [layer_paths.layer_path(module, i) for i in range(flat[k].shape[0])] if scanned else [module]
    found = [m for m in layers if f"{m}/lora_a" in values]
    if not found:
      continue
    if len(found) < len(layers):  # a scan shares one structure: every layer adapted, or none
      errors.append(f"{module}: the adapter covers {len(found)} of its {len(layers)} layers; a scanned model "
                    "(model.scan_layers) needs all of them, or load it with scan_layers=False")
      continue
    targets.add(module)
    for leaf, dim in (("lora_a", 0), ("lora_b", 1)):
      stacked = [values[f"{m}/{leaf}"] for m in layers]
      value, dim = (np.stack(stacked), dim + 1) if scanned else (stacked[0], dim)
      out[f"{module}/{leaf}"] = _place_like(value, flat[k], dim, f"{module}/{leaf}")
  if errors:
    raise ValueError(f"{weights}: cannot load adapter:\n  " + "\n  ".join(errors))
  config = LoraConfig(rank=cfg["r"], alpha=float(cfg["lora_alpha"]), dropout=float(cfg.get("lora_dropout", 0.0)),
                      targets="^(" + "|".join(re.escape(m) for m in sorted(targets)) + ")$")
  return config, _nest(out)


def _token_rows(key, value, target, flat, indices):
  """(leaf, placed value, None) for a peft trainable-tokens tensor that is exactly the model's
  grown rows, else (leaf, None, error)."""
  leaf, name, transposed = target
  value = value.T if transposed else value
  vocab = flat["embed_tokens/embedding"].shape[0] if "embed_tokens/embedding" in flat else 0
  rows = list(range(vocab, vocab + value.shape[1 if transposed else 0]))
  if leaf in flat and flat[leaf].shape == value.shape and list(indices.get(name, ())) == rows:
    return leaf, jax.device_put(value.astype(flat[leaf].dtype), getattr(flat[leaf], "sharding", None)), None
  have = f"rows {vocab}..{vocab + flat[leaf].shape[1 if transposed else 0] - 1}" if leaf in flat else "none"
  return leaf, None, (f"{key}: trainable tokens {indices.get(name)} of {name}; the model's grown rows "
                      f"(LlmConfig.added_tokens) are {have}, and only those can be loaded")


def _place_like(value: np.ndarray, kernel, kernel_dim: int, path: str):
  """Puts a LoRA factor on the kernel's devices, split like the kernel along the dimension they
  share (through the one resolver, which reports a dimension that does not divide)."""
  sharding = getattr(kernel, "sharding", None)
  if isinstance(sharding, jax.sharding.NamedSharding):
    axes = [None] * value.ndim
    axes[kernel_dim] = (tuple(sharding.spec) + (None, None))[kernel_dim]
    spec = sharding_lib.checked_spec(path, value.shape, axes, sharding.mesh)
    sharding = jax.sharding.NamedSharding(sharding.mesh, spec)
  return jax.device_put(value, sharding)
