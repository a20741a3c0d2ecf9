"""Decoder-only LLM (Llama 2/3/3.1/3.2, Qwen2, Qwen3) in Flax Linen, built from a HF config.json.

Module and parameter names mirror Hugging Face (`layers_{i}/self_attn/q_proj/kernel` is
`model.layers.{i}.self_attn.q_proj.weight` transposed), so loading is a rename plus a transpose.
Kernels are 2-D (in, out); every parameter has logical axis names from
("vocab", "embed", "mlp", "heads", "kv_heads", "head_dim", "norm", "lora_rank", "layers").

With `scan_layers` (the default) the layers are one `nn.scan`: every layer parameter is stacked
on a leading "layers" axis under `layers/...`, so a 30- or 80-layer model compiles one layer's
program instead of 30 or 80 copies (MaxText's layout). models/layer_paths.py maps the stacked
leaves to the per-layer names the unscanned model and Hugging Face use, for loading and export.
"""

import dataclasses
import json
import math
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from deft_jax.models import lora as lora_lib

FAMILIES = ("llama", "qwen2", "qwen3")
ROPE_TYPES = ("default", "linear", "llama3")
_ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}
_LLAMA3_KEYS = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
# What a rematerialised layer keeps for the backward pass (jax.checkpoint_policies); "none": no remat.
REMAT_POLICIES = {"none": None, "full": "nothing_saveable", "dots": "dots_with_no_batch_dims_saveable",
                  "dots_all": "dots_saveable", "everything": "everything_saveable"}


@dataclasses.dataclass(frozen=True, kw_only=True)
class LlmConfig:
  """Decoder hyper-parameters; field names follow Hugging Face config.json."""

  model_type: str = "llama"
  vocab_size: int
  hidden_size: int
  intermediate_size: int
  num_hidden_layers: int
  num_attention_heads: int
  num_key_value_heads: int
  head_dim: int | None = None  # None: hidden_size // num_attention_heads
  rms_norm_eps: float = 1e-6
  rope_theta: float = 10000.0
  rope_scaling: dict | None = None  # {"rope_type": "linear" | "llama3", ...}; None = plain RoPE
  tie_word_embeddings: bool = False
  attention_bias: bool = False
  max_position_embeddings: int = 2048
  bos_token_id: int | None = None
  eos_token_id: int | list[int] | None = None
  pad_token_id: int | None = None
  # deft-jax's own: rows grown past the checkpoint's vocab_size for tokens the tokenizer adds
  # (the expert markers). They live in their own parameters so they train while the base stays
  # frozen; to_hf() writes the grown table.
  added_tokens: int = 0

  def __post_init__(self):
    if self.model_type not in FAMILIES:
      raise ValueError(f"unsupported model_type {self.model_type!r}; supported: {', '.join(FAMILIES)}")
    if self.num_attention_heads % self.num_key_value_heads:
      raise ValueError(f"num_attention_heads={self.num_attention_heads} is not a multiple of "
                       f"num_key_value_heads={self.num_key_value_heads}")
    if self.head_dim is None:
      if self.hidden_size % self.num_attention_heads:
        raise ValueError(f"hidden_size={self.hidden_size} is not divisible by "
                         f"num_attention_heads={self.num_attention_heads}; set head_dim")
      object.__setattr__(self, "head_dim", self.hidden_size // self.num_attention_heads)
    if self.head_dim % 2:
      raise ValueError(f"head_dim must be even for RoPE, got {self.head_dim}")
    if self.rope_scaling is not None:
      kind = self.rope_scaling.get("rope_type")
      if kind not in ROPE_TYPES:
        raise ValueError(f"unsupported rope scaling type {kind!r}; supported: {', '.join(ROPE_TYPES)}")
      needed = {"linear": ("factor",), "llama3": _LLAMA3_KEYS}.get(kind, ())
      absent = [k for k in needed if k not in self.rope_scaling]
      if absent:
        raise ValueError(f"rope scaling {kind!r} needs {', '.join(absent)}")
    if isinstance(self.eos_token_id, list):
      object.__setattr__(self, "eos_token_id", tuple(self.eos_token_id))
    if self.added_tokens < 0:
      raise ValueError(f"added_tokens must be >= 0, got {self.added_tokens}")

  @property
  def total_vocab(self) -> int:
    """Rows of the embedding table: the checkpoint's vocabulary plus the grown rows."""
    return self.vocab_size + self.added_tokens

  def __hash__(self):  # rope_scaling is a dict; hash a canonical form so the config is a static jit arg.
    return hash(json.dumps(dataclasses.asdict(self), sort_keys=True, default=list))

  @property
  def qkv_bias(self) -> bool:
    return self.attention_bias or self.model_type == "qwen2"  # Qwen2 always has q/k/v bias.

  @property
  def o_bias(self) -> bool:
    return self.attention_bias and self.model_type != "qwen2"

  @classmethod
  def from_hf(cls, config: "dict | str | os.PathLike") -> "LlmConfig":
    """From a config.json dict, file, or checkpoint directory; unsupported features raise."""
    if not isinstance(config, dict):
      path = os.path.join(config, "config.json") if os.path.isdir(config) else os.fspath(config)
      if not os.path.exists(path):
        raise FileNotFoundError(f"no config.json at {path}")
      with open(path) as f:
        config = json.load(f)
    model_type = config.get("model_type")
    if model_type not in FAMILIES:
      raise ValueError(f"unsupported model_type {model_type!r}; supported: {', '.join(FAMILIES)}")
    _check_supported(config)
    rope = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
    rope_theta = rope.pop("rope_theta", config.get("rope_theta", 10000.0))
    kind = rope.pop("rope_type", rope.pop("type", "default"))
    fields = {f.name for f in dataclasses.fields(cls)} - {"rope_theta", "rope_scaling", "added_tokens"}
    kwargs = {k: config[k] for k in fields if config.get(k) is not None}
    missing = [f.name for f in dataclasses.fields(cls)
               if f.default is dataclasses.MISSING and f.name not in kwargs]
    if missing:
      raise ValueError(f"config.json lacks required fields: {', '.join(missing)}")
    return cls(**kwargs, rope_theta=float(rope_theta),
               rope_scaling=None if kind == "default" else {"rope_type": kind, **rope})

  def to_hf(self) -> dict:
    """A config.json that transformers loads (both the v4 and the v5 RoPE fields)."""
    out = dataclasses.asdict(self)
    out["vocab_size"] = self.total_vocab
    out.pop("added_tokens")
    if isinstance(self.eos_token_id, tuple):
      out["eos_token_id"] = list(self.eos_token_id)
    rope = {"rope_type": "default"} if self.rope_scaling is None else dict(self.rope_scaling)
    out.update(architectures=[_ARCHITECTURES[self.model_type]], hidden_act="silu",
               rope_parameters={**rope, "rope_theta": self.rope_theta})
    if self.model_type == "qwen2":
      out.pop("attention_bias")
    return out


def _check_supported(config: dict) -> None:
  """Names every feature of the config.json that this decoder does not implement."""
  problems = []
  if config.get("hidden_act", "silu") != "silu":
    problems.append(f"hidden_act={config['hidden_act']!r} (only 'silu')")
  if config.get("mlp_bias"):
    problems.append("mlp_bias=True")
  if config.get("use_sliding_window") or any(t != "full_attention" for t in config.get("layer_types") or ()):
    problems.append("sliding-window attention")
  moe_keys = ("num_experts", "num_local_experts", "num_experts_per_tok", "moe_intermediate_size")
  if any(config.get(k) for k in moe_keys):
    problems.append("mixture of experts")
  if config.get("pretraining_tp", 1) != 1:
    problems.append(f"pretraining_tp={config['pretraining_tp']}")
  rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
  kind = rope.get("rope_type", rope.get("type", "default"))
  if kind not in ROPE_TYPES:
    problems.append(f"rope scaling type {kind!r} (supported: {', '.join(ROPE_TYPES)})")
  if problems:
    raise ValueError(f"unsupported {config.get('model_type')} feature(s): {'; '.join(problems)}")


def rope_inv_freq(config: LlmConfig) -> np.ndarray:
  """RoPE inverse frequencies (Su et al. 2021), with linear or Llama 3.1 scaling; float32 like HF."""
  dim = config.head_dim
  inv_freq = 1.0 / (np.float32(config.rope_theta) ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
  scaling = config.rope_scaling or {"rope_type": "default"}
  if scaling["rope_type"] == "linear":
    return (inv_freq / np.float32(scaling["factor"])).astype(np.float32)
  if scaling["rope_type"] == "llama3":
    # Llama 3.1 frequency-dependent scaling (Meta llama-models, `apply_scaling`).
    factor, low, high, old_len = (float(scaling[k]) for k in _LLAMA3_KEYS)
    wavelen = 2 * math.pi / inv_freq
    scaled = np.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
    return np.where(medium, smoothed, scaled).astype(np.float32)
  return inv_freq.astype(np.float32)


def apply_rope(x: jax.Array, positions: jax.Array, inv_freq: np.ndarray) -> jax.Array:
  """Rotates (B, S, H, hd) by position, "rotate_half" layout as in HF Llama/Qwen."""
  freqs = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)
  emb = jnp.concatenate([freqs, freqs], axis=-1)[:, :, None, :]
  cos, sin = jnp.cos(emb), jnp.sin(emb)
  x32 = x.astype(jnp.float32)
  x1, x2 = jnp.split(x32, 2, axis=-1)
  rotated = jnp.concatenate([-x2, x1], axis=-1)
  return (x32 * cos + rotated * sin).astype(x.dtype)


class RMSNorm(nn.Module):
  """RMSNorm (Zhang & Sennrich 2019), statistics in float32."""

  eps: float
  axis_name: str = "norm"
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, (self.axis_name,)),
                       (x.shape[-1],), self.param_dtype)
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
    return y.astype(self.dtype) * scale.astype(self.dtype)


class Embed(nn.Module):
  """Token embedding table (+ `added` grown rows in their own parameter); `attend` reuses it as a
  tied output projection."""

  num_embeddings: int
  features: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  added: int = 0

  def setup(self):
    self.embedding = self.param(
        "embedding", nn.with_logical_partitioning(nn.initializers.normal(0.02), ("vocab", "embed")),
        (self.num_embeddings, self.features), self.param_dtype)
    if self.added:
      self.added_embedding = self.param(
          "added_embedding", nn.with_logical_partitioning(nn.initializers.normal(0.02), (None, "embed")),
          (self.added, self.features), self.param_dtype)

  def __call__(self, ids):
    total = self.num_embeddings + self.added
    if not isinstance(ids, jax.core.Tracer) and np.size(ids) and int(np.max(np.asarray(ids))) >= total:
      # Concrete ids only (under jit an id past the table cannot raise: state.deft_config refuses
      # a tokenizer with ids past it before anything is traced).
      raise ValueError(f"token id {int(np.max(np.asarray(ids)))} is past the embedding table ({total} rows); "
                       "grow it with LlmConfig.added_tokens")
    base = jnp.take(self.embedding, jnp.minimum(ids, self.num_embeddings - 1), axis=0)
    if not self.added:
      return base.astype(self.dtype)
    grown = jnp.take(self.added_embedding, jnp.clip(ids - self.num_embeddings, 0, self.added - 1), axis=0)
    return jnp.where((ids < self.num_embeddings)[..., None], base, grown).astype(self.dtype)

  def attend(self, x):
    x = x.astype(self.dtype)
    logits = jnp.dot(x, self.embedding.astype(self.dtype).T)
    if self.added:
      logits = jnp.concatenate([logits, jnp.dot(x, self.added_embedding.astype(self.dtype).T)], axis=-1)
    return logits


def attend(q, k, v, mask, dtype):
  """Grouped-query attention (Ainslie et al. 2023). q (B,S,H,hd), k/v (B,T,KV,hd), mask (B,S,T).

  `jax.nn.dot_product_attention` (query head i reads kv head i // (H / KV), as HF repeat_kv;
  scores and softmax in float32; cuDNN flash attention where the backend has it).
  """
  b, s, h, d = q.shape
  out = jax.nn.dot_product_attention(q.astype(dtype), k.astype(dtype), v.astype(dtype), mask=mask[:, None])
  return out.reshape(b, s, h * d)


class Attention(nn.Module):
  """Self-attention with RoPE, GQA, optional q/k norm (Qwen3) and an optional KV cache."""

  config: LlmConfig
  lora: lora_lib.LoraConfig | None = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  fused_projections: bool = False  # one qkv_proj (fuse_projections' params) instead of q/k/v_proj

  @nn.compact
  def __call__(self, x, positions, mask, deterministic, cache=None, cache_index=None):
    c = self.config
    b, s, _ = x.shape
    h, kv, hd = c.num_attention_heads, c.num_key_value_heads, c.head_dim

    def dense(features, axes, bias, name):
      return lora_lib.LoraLinear(features, axes, use_bias=bias, lora=self.lora, dtype=self.dtype,
                                 param_dtype=self.param_dtype, name=name)

    if self.fused_projections:
      qkv = dense((h + 2 * kv) * hd, ("embed", "heads"), c.qkv_bias, "qkv_proj")(x, deterministic)
      q, k, v = jnp.split(qkv, [h * hd, (h + kv) * hd], axis=-1)
    else:
      q = dense(h * hd, ("embed", "heads"), c.qkv_bias, "q_proj")(x, deterministic)
      k = dense(kv * hd, ("embed", "kv_heads"), c.qkv_bias, "k_proj")(x, deterministic)
      v = dense(kv * hd, ("embed", "kv_heads"), c.qkv_bias, "v_proj")(x, deterministic)
    q, k, v = q.reshape(b, s, h, hd), k.reshape(b, s, kv, hd), v.reshape(b, s, kv, hd)
    if c.model_type == "qwen3":
      norm = lambda name: RMSNorm(c.rms_norm_eps, "head_dim", self.dtype, self.param_dtype, name=name)
      q, k = norm("q_norm")(q), norm("k_norm")(k)
    inv_freq = rope_inv_freq(c)
    q, k = apply_rope(q, positions, inv_freq), apply_rope(k, positions, inv_freq)
    if cache is not None:
      k = jax.lax.dynamic_update_slice_in_dim(cache["k"], k.astype(cache["k"].dtype), cache_index, axis=1)
      v = jax.lax.dynamic_update_slice_in_dim(cache["v"], v.astype(cache["v"].dtype), cache_index, axis=1)
      cache = {"k": k, "v": v}
    out = attend(q, k.astype(self.dtype), v.astype(self.dtype), mask, self.dtype)
    return dense(c.hidden_size, ("heads", "embed"), c.o_bias, "o_proj")(out, deterministic), cache


class Mlp(nn.Module):
  """SwiGLU feed-forward (Shazeer 2020): down(silu(gate(x)) * up(x))."""

  config: LlmConfig
  lora: lora_lib.LoraConfig | None = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  fused_projections: bool = False  # one gate_up_proj (fuse_projections' params) instead of gate/up_proj

  @nn.compact
  def __call__(self, x, deterministic):
    c = self.config

    def dense(features, axes, name):
      return lora_lib.LoraLinear(features, axes, lora=self.lora, dtype=self.dtype,
                                 param_dtype=self.param_dtype, name=name)

    if self.fused_projections:
      gate_up = dense(2 * c.intermediate_size, ("embed", "mlp"), "gate_up_proj")(x, deterministic)
      gate, up = jnp.split(gate_up, 2, axis=-1)
    else:
      gate = dense(c.intermediate_size, ("embed", "mlp"), "gate_proj")(x, deterministic)
      up = dense(c.intermediate_size, ("embed", "mlp"), "up_proj")(x, deterministic)
    return dense(c.hidden_size, ("mlp", "embed"), "down_proj")(nn.silu(gate) * up, deterministic)


class DecoderLayer(nn.Module):
  """Pre-norm transformer block."""

  config: LlmConfig
  lora: lora_lib.LoraConfig | None = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  fused_projections: bool = False

  @nn.compact
  def __call__(self, x, positions, mask, deterministic, cache=None, cache_index=None):
    c = self.config
    norm = lambda name: RMSNorm(c.rms_norm_eps, "norm", self.dtype, self.param_dtype, name=name)
    attn_out, cache = Attention(c, self.lora, self.dtype, self.param_dtype, self.fused_projections, name="self_attn")(
        norm("input_layernorm")(x), positions, mask, deterministic, cache, cache_index)
    x = x + attn_out
    x = x + Mlp(c, self.lora, self.dtype, self.param_dtype, self.fused_projections, name="mlp")(
        norm("post_attention_layernorm")(x), deterministic)
    return x, cache


def default_positions(attention_mask: jax.Array) -> jax.Array:
  """Position ids that skip padding (left or right), as HF generate: cumsum(mask) - 1, >= 0."""
  return jnp.maximum(jnp.cumsum(attention_mask.astype(jnp.int32), axis=-1) - 1, 0)


class DecoderLM(nn.Module):
  """Causal LM: embed -> layers (scanned) or layers_{i} -> norm -> lm_head (or the tied embedding)."""

  config: LlmConfig
  lora: lora_lib.LoraConfig | None = None
  dtype: Any = jnp.float32  # compute
  param_dtype: Any = jnp.float32
  remat: str = "none"  # a REMAT_POLICIES name: what each layer keeps for the backward pass
  scan_layers: bool = True  # one nn.scan over the layers (parameters stacked on a "layers" axis)
  # q/k/v and gate/up as one matmul each, on fuse_projections' params (decoding.generate's model)
  fused_projections: bool = False

  def setup(self):
    c = self.config
    if self.fused_projections and self.lora is not None:
      raise ValueError("fused_projections runs merged weights: lora=None, on fuse_projections(params, lora)")
    self.embed_tokens = Embed(c.vocab_size, c.hidden_size, self.dtype, self.param_dtype, c.added_tokens)
    layer = DecoderLayer
    policy = remat_policy(self.remat)
    if policy:
      # static_argnums counts `self`: 4 is `deterministic`.
      layer = nn.remat(layer, static_argnums=(4,), policy=getattr(jax.checkpoint_policies, policy),
                       prevent_cse=not self.scan_layers)
    if self.scan_layers:
      self.layers = nn.scan(layer, variable_axes={"params": 0}, split_rngs={"params": True, "dropout": True},
                            in_axes=(nn.broadcast, nn.broadcast, nn.broadcast, 0, nn.broadcast),
                            length=c.num_hidden_layers, metadata_params={nn.PARTITION_NAME: "layers"})(
                                c, self.lora, self.dtype, self.param_dtype, self.fused_projections)
    else:
      self.layers = [layer(c, self.lora, self.dtype, self.param_dtype, self.fused_projections)
                     for _ in range(c.num_hidden_layers)]
    self.norm = RMSNorm(c.rms_norm_eps, "norm", self.dtype, self.param_dtype)
    if not c.tie_word_embeddings:
      self.lm_head = lora_lib.LoraLinear(c.vocab_size, ("embed", "vocab"), lora=self.lora,
                                         dtype=self.dtype, param_dtype=self.param_dtype)
      if c.added_tokens:  # output columns of the grown rows, trainable beside the frozen head
        self.added_lm_head = self.param(
            "added_lm_head", nn.with_logical_partitioning(nn.initializers.normal(0.02), ("embed", None)),
            (c.hidden_size, c.added_tokens), self.param_dtype)

  def embed(self, input_ids: jax.Array) -> jax.Array:
    """(B, S) token ids -> (B, S, D) embeddings in the compute dtype."""
    return self.embed_tokens(input_ids)

  def __call__(self, input_ids=None, *, inputs_embeds=None, attention_mask=None, positions=None,
               deterministic=True, return_hidden=False):
    """Logits (B, S, V) float32 [and final-normed hidden (B, S, D)]; causal + padding mask."""
    if (input_ids is None) == (inputs_embeds is None):
      raise ValueError("pass exactly one of input_ids and inputs_embeds")
    x = self.embed(input_ids) if inputs_embeds is None else inputs_embeds.astype(self.dtype)
    b, s = x.shape[:2]
    valid = jnp.ones((b, s), bool) if attention_mask is None else attention_mask.astype(bool)
    if positions is None:
      positions = default_positions(valid)
    mask = jnp.tril(jnp.ones((s, s), bool))[None] & valid[:, None, :]
    hidden, _ = self._stack(x, positions, mask, deterministic, None, None)
    logits = self.logits(hidden, deterministic)
    return (logits, hidden) if return_hidden else logits

  def decode(self, inputs_embeds, positions, kv_valid, cache, cache_index):
    """Runs S new tokens written at cache slots [cache_index, cache_index + S).

    kv_valid (B, T) marks cache slots holding real tokens (False for padding); a slot attends to
    valid slots at or before it. Returns the final-normed hidden (B, S, D) and the updated cache;
    `logits` projects only the rows a sampler needs. The layers run unrolled with a per-layer
    cache (llm.init_cache); decoding.generate splits a scanned stack before it decodes.
    """
    if self.scan_layers:
      raise ValueError("DecoderLM.decode runs the layers unrolled: split a scanned model first "
                       "(scan_layers=False on layer_paths.unstack's params), as decoding.generate does")
    s, t = inputs_embeds.shape[1], kv_valid.shape[1]
    q_slot = cache_index + jnp.arange(s)
    mask = (jnp.arange(t)[None, :] <= q_slot[:, None])[None] & kv_valid[:, None, :]
    return self._stack(inputs_embeds.astype(self.dtype), positions, mask, True, cache, cache_index)

  def logits(self, hidden, deterministic=True):
    """Final-normed hidden (..., D) -> float32 logits (..., V)."""
    if self.config.tie_word_embeddings:
      return self.embed_tokens.attend(hidden).astype(jnp.float32)
    logits = self.lm_head(hidden, deterministic)
    if self.config.added_tokens:
      grown = jnp.dot(hidden.astype(self.dtype), self.added_lm_head.astype(self.dtype))
      logits = jnp.concatenate([logits, grown], axis=-1)
    return logits.astype(jnp.float32)

  def _stack(self, x, positions, mask, deterministic, cache, cache_index):
    if self.scan_layers:  # no cache: decode runs unrolled
      x, _ = self.layers(x, positions, mask, deterministic, None, None)
      return self.norm(x), None
    new_cache = []
    for i, layer in enumerate(self.layers):
      x, layer_cache = layer(x, positions, mask, deterministic, None if cache is None else cache[i], cache_index)
      new_cache.append(layer_cache)
    return self.norm(x), new_cache


_FUSED = (("qkv_proj", ("q_proj", "k_proj", "v_proj")), ("gate_up_proj", ("gate_proj", "up_proj")))


def fuse_projections(params, lora: lora_lib.LoraConfig | None = None):
  """Params of the model with fused_projections=True and lora=None that computes what `params`
  do: adapters merged, then q/k/v (kernels, and biases where qkv_bias) and gate/up concatenated
  on the output axis. Scanned or per-layer alike. Merging rounds to the kernel's dtype (as peft's
  merge_and_unload does): a bf16 base holds its adapters at bf16 precision.

  A batch-1 decode step is matvecs bound by reading weights; one wider matvec reads them faster
  than three or two narrow ones (SmolLM2's shape on 2 cores: the seven projections 21.5 ms per
  token, 18.4 ms fused).
  """
  flat = traverse_util.flatten_dict(params if lora is None else lora_lib.merge(params, lora), sep="/")
  if any(lora_lib.is_lora(p) for p in flat):
    raise ValueError("params hold LoRA leaves: pass their LoraConfig to merge them first")
  for fused, parts in _FUSED:
    for path in [p for p in flat if p.split("/")[-2:-1] == [parts[0]]]:
      scope, leaf = path.rsplit("/", 2)[0], path.rsplit("/", 1)[1]
      flat[f"{scope}/{fused}/{leaf}"] = jnp.concatenate([flat.pop(f"{scope}/{p}/{leaf}") for p in parts], axis=-1)
  return traverse_util.unflatten_dict(flat, sep="/")


def remat_policy(name: str) -> str | None:
  """The jax.checkpoint_policies name of a REMAT_POLICIES entry (None: no remat)."""
  if name not in REMAT_POLICIES:
    raise ValueError(f"model.remat: unknown policy {name!r}; choose from {', '.join(REMAT_POLICIES)}")
  return REMAT_POLICIES[name]


def init_cache(config: LlmConfig, batch: int, length: int, dtype=jnp.float32) -> list[dict[str, jax.Array]]:
  """Empty per-layer KV cache: [{"k": (B, T, KV, hd), "v": ...}] * num_hidden_layers (decoding
  runs the layers unrolled: decoding.generate splits a scanned stack first)."""
  shape = (batch, length, config.num_key_value_heads, config.head_dim)
  return [{"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)} for _ in range(config.num_hidden_layers)]


def abstract_params(module: DecoderLM):
  """Parameter shapes with logical-axis metadata (nn.LogicallyPartitioned), no allocation."""
  ids = jnp.zeros((1, 1), jnp.int32)
  return jax.eval_shape(module.init, jax.random.key(0), ids)["params"]
