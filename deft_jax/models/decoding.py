"""Cached autoregressive decoding: one jitted prefill, then a jitted while_loop, one token a step.

The KV cache is explicit arrays (llm.init_cache) sized prompt + max_new_tokens. Prompts are
left-padded (right padding also works: the last real token's logits seed the loop, and padded
slots are masked out of attention for every later token).
"""

import functools

import jax
import jax.numpy as jnp
from flax import traverse_util

from deft_jax.models import layer_paths, llm


def sample(logits: jax.Array, rng: jax.Array, temperature: float, top_k: int, top_p: float) -> jax.Array:
  """(B, V) float32 logits -> (B,) token ids; temperature 0 is greedy."""
  if temperature == 0.0:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  logits = logits / temperature
  neg_inf = jnp.finfo(logits.dtype).min
  if top_k > 0:
    kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
    logits = jnp.where(logits < kth, neg_inf, logits)
  if top_p < 1.0:
    # Nucleus sampling (Holtzman et al. 2020): keep the smallest head of the sorted distribution
    # whose mass reaches top_p; a token stays if the mass strictly before it is < top_p.
    sorted_logits = jnp.sort(logits, axis=-1)[:, ::-1]
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    keep = (jnp.cumsum(probs, axis=-1) - probs) < top_p
    threshold = jnp.min(jnp.where(keep, sorted_logits, jnp.inf), axis=-1, keepdims=True)
    logits = jnp.where(logits < threshold, neg_inf, logits)
  return jax.random.categorical(rng, logits, axis=-1).astype(jnp.int32)


def generate(module: llm.DecoderLM, params, *, input_ids=None, inputs_embeds=None, attention_mask,
             max_new_tokens: int, rng=None, temperature: float = 0.0, top_k: int = 0,
             top_p: float = 1.0, stop_tokens=(), pad_token_id: int = 0) -> jax.Array:
  """(B, max_new_tokens) new token ids; after a stop token (kept) a row holds pad_token_id.

  The prompt is `inputs_embeds` (e.g. prefix embeddings from encoders) followed by the
  embeddings of `input_ids`; either may be absent. attention_mask covers the whole prompt, or
  only input_ids (the prefix then counts as real tokens).
  """
  if input_ids is None and inputs_embeds is None:
    raise ValueError("pass input_ids, inputs_embeds or both")
  if max_new_tokens < 1:
    raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
  if temperature < 0 or not 0 < top_p <= 1 or top_k < 0:
    raise ValueError(f"bad sampling settings: temperature={temperature}, top_k={top_k}, top_p={top_p}")
  if temperature > 0 and rng is None:
    raise ValueError("sampling (temperature > 0) needs rng")
  return _generate(module, params, input_ids, inputs_embeds, jnp.asarray(attention_mask),
                   jax.random.key(0) if rng is None else rng, fuse=_fusable(module, params),
                   max_new_tokens=max_new_tokens,
                   temperature=float(temperature), top_k=int(top_k), top_p=float(top_p),
                   stop_tokens=tuple(int(t) for t in stop_tokens), pad_token_id=int(pad_token_id))


def _fusable(module, params) -> bool:
  """Whether generate fuses the projections (llm.fuse_projections): not when the weights are
  split over devices (a fused q/k/v kernel would cut across the heads' split), nor when adapters
  would be merged into narrower weights (a bf16 base would round them away)."""
  leaves = jax.tree.leaves(params)
  one_device = all(len(x.sharding.device_set) == 1 for x in leaves
                   if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer))
  return one_device and (module.lora is None or all(x.dtype == jnp.float32 for x in leaves))


@functools.partial(jax.jit, static_argnames=("module", "fuse", "max_new_tokens", "temperature", "top_k",
                                              "top_p", "stop_tokens", "pad_token_id"))
def _generate(module, params, input_ids, inputs_embeds, attention_mask, rng, *, fuse, max_new_tokens,
              temperature, top_k, top_p, stop_tokens, pad_token_id):
  # A token step reads every weight once, in matvecs at batch 1; the weights are rearranged for
  # that once here, before the loop, at the cost of one copy of the layer weights.
  if module.scan_layers:
    # Inside the layer scan each layer's weights are a dynamic slice of the stack, which XLA:CPU
    # copies before every matmul, every token; split, the layers are read in place (SmolLM2,
    # batch 1, 2 cores: 23.4 -> 32 tok/s).
    params = traverse_util.unflatten_dict(layer_paths.unstack(traverse_util.flatten_dict(params, sep="/")), sep="/")
    module = module.clone(scan_layers=False)
  # Adapters merged, q/k/v and gate/up one wider matvec each (llm.fuse_projections). After the
  # split: each fused kernel is then written once, from slices of the stack (fusing the stack
  # first held another 200 MB at SmolLM2's size).
  if fuse:
    params = llm.fuse_projections(params, module.lora)
    module = module.clone(lora=None, fused_projections=True)
  variables = {"params": params}
  parts = [] if inputs_embeds is None else [inputs_embeds.astype(module.dtype)]
  if input_ids is not None:
    parts.append(module.apply(variables, input_ids, method="embed"))
  x = jnp.concatenate(parts, axis=1)
  b, s = x.shape[:2]
  mask = attention_mask.astype(bool)
  mask = jnp.concatenate([jnp.ones((b, s - mask.shape[1]), bool), mask], axis=1)
  kv_valid = jnp.concatenate([mask, jnp.ones((b, max_new_tokens), bool)], axis=1)
  positions = llm.default_positions(mask)

  cache = llm.init_cache(module.config, b, s + max_new_tokens, module.dtype)
  hidden, cache = module.apply(variables, x, positions, kv_valid, cache, 0, method="decode")
  last = s - 1 - jnp.argmax(mask[:, ::-1], axis=1)  # last real token of each row
  logits = module.apply(variables, hidden[jnp.arange(b), last], method="logits")
  next_position = jnp.sum(mask, axis=1, dtype=jnp.int32)
  stops = jnp.asarray(stop_tokens or (-1,), jnp.int32)

  def pick(logits, rng, done):
    token = sample(logits, rng, temperature, top_k, top_p)
    token = jnp.where(done, pad_token_id, token)
    return token, done | jnp.isin(token, stops)

  rng, first_rng = jax.random.split(rng)
  token, done = pick(logits, first_rng, jnp.zeros((b,), bool))
  tokens = jnp.full((b, max_new_tokens), pad_token_id, jnp.int32).at[:, 0].set(token)

  def cond(state):
    i, _, _, _, done, _ = state
    return (i < max_new_tokens) & ~jnp.all(done)

  def body(state):
    i, tokens, token, cache, done, rng = state
    emb = module.apply(variables, token[:, None], method="embed")
    hidden, cache = module.apply(variables, emb, (next_position + i - 1)[:, None], kv_valid, cache,
                                 s + i - 1, method="decode")
    logits = module.apply(variables, hidden[:, 0], method="logits")
    rng, step_rng = jax.random.split(rng)
    token, done = pick(logits, step_rng, done)
    return i + 1, tokens.at[:, i].set(token), token, cache, done, rng

  state = (jnp.int32(1), tokens, token, cache, done, rng)
  return jax.lax.while_loop(cond, body, state)[1]
