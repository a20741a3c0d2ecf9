"""Local Hugging Face checkpoints (config.json + safetensors + tokenizer) <-> DecoderLM params.

Loading streams one tensor at a time from safetensors into its target sharding: each device
shard is read in row blocks straight into an aligned buffer (which the CPU backend adopts without
copying), so host memory holds the placed parameters plus one block in flight.
"""

import dataclasses
import json
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import safetensors
import safetensors.numpy
from flax import traverse_util

from deft_jax.errors import CheckpointError
from deft_jax.models import layer_paths, llm
from deft_jax.models import lora as lora_lib
from deft_jax.train import sharding

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)
_CHUNK_BYTES = 4 << 20


def is_added(path: str) -> bool:
  """Grown-vocabulary leaves (llm.Embed's added rows, the untied head's added columns)."""
  return path.rsplit("/", 1)[-1] in ("added_embedding", "added_lm_head")


def hf_param_name(path: str) -> str:
  """"layers_0/self_attn/q_proj/kernel" -> "model.layers.0.self_attn.q_proj.weight"."""
  module, leaf = path.rsplit("/", 1)
  return f"{lora_lib.hf_module_name(module)}.{'bias' if leaf == 'bias' else 'weight'}"


def _is_kernel(path: str) -> bool:
  return path.endswith("/kernel")  # torch Linear stores (out, in); Flax (in, out)


def param_shardings(abstract, mesh: jax.sharding.Mesh, rules=None) -> dict[str, jax.sharding.NamedSharding]:
  """NamedSharding per flat path, from the one resolver (train/sharding.py) over `rules`."""
  resolved = sharding.resolve(abstract, mesh, sharding.DEFAULT_RULES if rules is None else rules)
  return traverse_util.flatten_dict(resolved, sep="/")


def default_mesh() -> jax.sharding.Mesh:
  """One device, axes (data, fsdp, tensor): everything replicated on the first device."""
  return jax.sharding.Mesh(np.array(jax.devices()[:1]).reshape(1, 1, 1), ("data", "fsdp", "tensor"))


def _open(file: str):
  try:
    return safetensors.safe_open(file, framework="numpy")
  except FileNotFoundError as e:
    raise CheckpointError(f"checkpoint file missing: {file}") from e
  except Exception as e:  # safetensors raises SafetensorError for bad headers and truncation.
    raise CheckpointError(f"{file}: not a readable safetensors file ({e})") from e


def checkpoint_index(path: str | os.PathLike) -> dict[str, str]:
  """HF tensor name -> safetensors file, for a single-file or sharded checkpoint."""
  path = os.fspath(path)
  index = os.path.join(path, INDEX_FILE)
  if os.path.exists(index):
    with open(index) as f:
      weight_map = json.load(f)["weight_map"]
    return {k: os.path.join(path, v) for k, v in weight_map.items()}
  single = os.path.join(path, SINGLE_FILE)
  if not os.path.exists(single):
    raise CheckpointError(f"{path}: neither {SINGLE_FILE} nor {INDEX_FILE} found")
  with _open(single) as sf:
    return {k: single for k in sf.keys()}


def _shapes(index: dict[str, str]) -> dict[str, tuple[int, ...]]:
  shapes = {}
  for file in sorted(set(index.values())):
    with _open(file) as sf:
      names = set(sf.keys())
      for key in (k for k, f in index.items() if f == file):
        if key not in names:
          raise CheckpointError(f"{file}: index lists {key} but the file does not hold it")
        shapes[key] = tuple(sf.get_slice(key).get_shape())
  return shapes


def _aligned_empty(shape, dtype) -> np.ndarray:
  """Uninitialised 64-byte-aligned array: the CPU backend adopts such buffers without a copy."""
  dtype = np.dtype(dtype)
  raw = np.empty(int(np.prod(shape)) * dtype.itemsize + 64, np.uint8)
  start = -raw.ctypes.data % 64
  return raw[start: start + int(np.prod(shape)) * dtype.itemsize].view(dtype).reshape(shape)


def _read_shard(file: str, key: str, index: tuple[slice, ...], shape: tuple[int, ...], transpose: bool,
                dtype) -> np.ndarray:
  """The `index` shard (Flax layout) of tensor `key`, read in row blocks of about _CHUNK_BYTES.

  Each block reopens the file, so at most one block of mapped file pages is resident at a time.
  """
  bounds = [s.indices(n)[:2] for s, n in zip(index, shape)]
  out = _aligned_empty([stop - start for start, stop in bounds], dtype)
  hf_bounds = bounds[::-1] if transpose else bounds  # torch Linear stores (out, in)
  (first, last), cols = hf_bounds[0], tuple(slice(*b) for b in hf_bounds[1:])
  row_bytes = out.itemsize * int(np.prod([stop - start for start, stop in hf_bounds[1:]]))
  step = max(1, _CHUNK_BYTES // max(row_bytes, 1))
  for start in range(first, last, step):
    stop = min(start + step, last)
    with _open(file) as sf:
      try:
        block = sf.get_slice(key)[(slice(start, stop), *cols)].astype(dtype, copy=False)
      except Exception as e:
        raise CheckpointError(f"{file}: cannot read tensor {key} ({e})") from e
    rows = slice(start - first, stop - first)
    if transpose:
      out[:, rows] = block.T
    else:
      out[rows] = block
  return out


def from_pretrained(path: str | os.PathLike, *, dtype=jnp.float32, param_dtype=jnp.float32,
                    lora: lora_lib.LoraConfig | None = None, mesh: jax.sharding.Mesh | None = None,
                    rules=None, rng: jax.Array | None = None, added_tokens: int = 0,
                    scan_layers: bool = True) -> tuple[llm.DecoderLM, Any]:
  """(module, params) from a local HF checkpoint directory.

  Params are plain arrays placed in NamedShardings from their logical names and `rules`
  (default train/sharding.py's DEFAULT_RULES) on `mesh` (default: one device). LoRA leaves, if `lora` is given, are
  freshly initialised from `rng` (B = 0, so the model starts equal to the checkpoint).
  `added_tokens` grows the vocabulary by that many rows (and head columns), each the mean of
  the checkpoint's rows (Hewitt 2021, "Initializing new word embeddings for pretrained language
  models"), so a new token starts where the model's average token is. `scan_layers` stacks the
  layers' tensors on a leading axis for the scanned module (each device reads only its shard).
  """
  path = os.fspath(path)
  config = dataclasses.replace(llm.LlmConfig.from_hf(path), added_tokens=added_tokens)
  module = llm.DecoderLM(config, lora=lora, dtype=dtype, param_dtype=param_dtype, scan_layers=scan_layers)
  abstract = llm.abstract_params(module)
  shardings = param_shardings(abstract, mesh or default_mesh(), rules)
  flat_abstract = traverse_util.flatten_dict(nn.meta.unbox(abstract), sep="/")
  # Each target leaf and the HF tensor(s) it reads: one, or one per layer for a scanned leaf.
  sources = {p: ([hf_param_name(layer_paths.layer_path(p, i)) for i in range(flat_abstract[p].shape[0])]
                 if layer_paths.is_scanned(p) else [hf_param_name(p)])
             for p in flat_abstract if not lora_lib.is_lora(p) and not is_added(p)}
  index = checkpoint_index(path)
  _check_keys(path, sources, flat_abstract, index, config)

  flat = {}
  for p, names in sources.items():
    shape, t = flat_abstract[p].shape, _is_kernel(p)
    if layer_paths.is_scanned(p):
      read = lambda idx, names=names, shape=shape, t=t: _read_layers(index, names, idx, shape, t, param_dtype)
    else:
      read = lambda idx, name=names[0], shape=shape, t=t: _read_shard(index[name], name, idx, shape, t, param_dtype)
    flat[p] = jax.make_array_from_callback(shape, shardings[p], read)
  flat.update(_mean_rows(flat, [p for p in flat_abstract if is_added(p)], flat_abstract, shardings))
  lora_paths = [p for p in flat_abstract if lora_lib.is_lora(p)]
  if lora_paths:
    flat.update(_init_lora(module, lora_paths, shardings, jax.random.key(0) if rng is None else rng))
  return module, traverse_util.unflatten_dict(flat, sep="/")


def _read_layers(index, names, idx, shape, transpose, dtype) -> np.ndarray:
  """The `idx` shard of a scanned leaf (L, ...): its layers' tensors read and stacked."""
  layers = range(*idx[0].indices(shape[0]))
  out = _aligned_empty([len(layers)] + [len(range(*s.indices(n))) for s, n in zip(idx[1:], shape[1:])], dtype)
  for j, i in enumerate(layers):
    out[j] = _read_shard(index[names[i]], names[i], idx[1:], shape[1:], transpose, dtype)
  return out


def _mean_rows(flat, added_paths, flat_abstract, shardings) -> dict:
  """Each grown leaf filled with the mean of the table it extends, computed where that table lies."""
  sources = {"added_embedding": ("embed_tokens/embedding", 0), "added_lm_head": ("lm_head/kernel", 1)}
  out = {}
  for p in added_paths:
    source, axis = sources[p.rsplit("/", 1)[-1]]
    shape, dtype = flat_abstract[p].shape, flat_abstract[p].dtype
    fill = lambda table, axis=axis, shape=shape, dtype=dtype: jnp.broadcast_to(
        jnp.mean(table.astype(jnp.float32), axis=axis, keepdims=True), shape).astype(dtype)
    out[p] = jax.jit(fill, out_shardings=shardings[p])(flat[source])
  return out


def _check_keys(path, sources, flat_abstract, index, config) -> None:
  """Raises one error listing every missing, unexpected and mis-shaped tensor."""
  shapes = _shapes(index)
  ignored = {k for k in shapes if k.endswith(_IGNORED_SUFFIXES)}
  if config.tie_word_embeddings:
    ignored.add("lm_head.weight")  # some tied checkpoints still store the copy
  wanted = {}
  for p, names in sources.items():
    want = flat_abstract[p].shape[1:] if layer_paths.is_scanned(p) else flat_abstract[p].shape
    wanted.update({name: tuple(want[::-1] if _is_kernel(p) else want) for name in names})
  problems = [f"missing: {k}" for k in sorted(set(wanted) - set(shapes))]
  problems += [f"unexpected: {k}" for k in sorted(set(shapes) - set(wanted) - ignored)]
  problems += [f"wrong shape: {name} is {shapes[name]}, model needs {want}"
               for name, want in sorted(wanted.items()) if name in shapes and shapes[name] != want]
  if problems:
    raise CheckpointError(f"{path}: checkpoint does not match the {config.model_type} config "
                          f"({len(problems)} problems):\n  " + "\n  ".join(problems))


def _init_lora(module, lora_paths, shardings, rng):
  """Initialises only the LoRA leaves; XLA drops the unused base-weight initialisers."""

  def init(rng):
    params = module.init(rng, jnp.zeros((1, 1), jnp.int32))["params"]
    flat = traverse_util.flatten_dict(nn.meta.unbox(params), sep="/")
    return {p: flat[p] for p in lora_paths}

  return jax.jit(init, out_shardings={p: shardings[p] for p in lora_paths})(rng)


def save_pretrained(module: llm.DecoderLM, params, path: str | os.PathLike) -> None:
  """Writes a HF checkpoint (config.json + model.safetensors); LoRA is merged into the kernels."""
  os.makedirs(path, exist_ok=True)
  if module.lora is not None:
    params = lora_lib.merge(params, module.lora)
  flat = traverse_util.flatten_dict(nn.meta.unbox(params), sep="/")
  grown = {p: flat.pop(p) for p in [p for p in flat if is_added(p)]}
  if "embed_tokens/added_embedding" in grown:  # the grown table, as transformers' resize_token_embeddings
    flat["embed_tokens/embedding"] = jnp.concatenate([flat["embed_tokens/embedding"],
                                                      grown["embed_tokens/added_embedding"]], axis=0)
  if "added_lm_head" in grown:
    flat["lm_head/kernel"] = jnp.concatenate([flat["lm_head/kernel"], grown["added_lm_head"]], axis=1)
  if any(lora_lib.is_lora(p) for p in flat):
    raise ValueError(f"LoRA leaves {[p for p in flat if lora_lib.is_lora(p)][:3]} but module.lora is None; "
                     "pass the module it was trained with")
  tensors = {}
  for p, v in layer_paths.unstack({p: np.asarray(jax.device_get(v)) for p, v in flat.items()}).items():
    tensors[hf_param_name(p)] = np.ascontiguousarray(v.T if _is_kernel(p) else v)
  dtypes = {np.dtype(v.dtype).name for v in tensors.values()}
  config = module.config.to_hf()
  config["torch_dtype"] = config["dtype"] = dtypes.pop() if len(dtypes) == 1 else "float32"
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(config, f, indent=2)
  safetensors.numpy.save_file(tensors, os.path.join(path, SINGLE_FILE), metadata={"format": "pt"})
