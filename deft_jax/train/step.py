"""The jitted train step: loss and gradients of the trainable weights, then the optimizer.

The state's params are the trainable leaves only (those optim.frozen does not match); the
frozen base rides along in state.frozen and is never differentiated, so a frozen 7B base
costs no gradient memory nor optimizer state. With grad_accum_steps = k the batch is split into k
micro-batches (row i goes to micro-batch i mod k, which keeps every row on its device) and a
scan sums their gradients; the LM term of each micro-batch is normalised by the whole
batch's answer tokens, so loss and gradients equal the one-batch ones for every per-example
term. Batch statistics (the decorrelation term) are taken per micro-batch.
"""

import jax
import jax.numpy as jnp
import optax
from flax import traverse_util

from deft_jax.train import losses, sharding


def micro_batches(batch, k: int, mesh, rules):
  """(B, ...) -> (k, B / k, ...) with micro-batch i holding rows i, i + k, ... (no data moves)."""
  def split(x):
    x = x.reshape(x.shape[0] // k, k, *x.shape[1:]).swapaxes(0, 1)
    return sharding.constrain(x, (None, "batch") + (None,) * (x.ndim - 2), mesh, rules)
  return jax.tree.map(split, batch)


def make_train_step(model, weights, state_shardings, mesh, *, grad_accum_steps: int = 1,
                    rules=sharding.DEFAULT_RULES):
  """jit(step)(state, batch, rng) -> (state, metrics); the state is donated."""
  k = grad_accum_steps
  if k < 1:
    raise ValueError(f"train.grad_accum_steps must be >= 1, got {k}")

  def loss_fn(train_params, frozen_params, batch, rng, lm_tokens):
    params = traverse_util.unflatten_dict({**frozen_params, **train_params})
    out = model.apply({"params": params}, batch, deterministic=False, rngs={"dropout": rng})
    # The largest activation: keep it split over batch and (under tensor parallelism) vocab.
    out = {**out, "lm_logits": sharding.constrain(out["lm_logits"], ("batch", None, "vocab"), mesh, rules)}
    return losses.hybrid_loss(out, batch, weights, lm_tokens)

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def step(state, batch, rng):
    train_params = traverse_util.flatten_dict(state.params)
    frozen_params = traverse_util.flatten_dict(state.frozen or {})
    if k == 1:
      (total, terms), grads = grad_fn(train_params, frozen_params, batch, rng, None)
    else:
      tokens = jnp.sum(batch["loss_mask"]) / k
      micro = micro_batches(batch, k, mesh, rules)

      def accumulate(acc, xs):
        mb, i = xs
        out = grad_fn(train_params, frozen_params, mb, jax.random.fold_in(rng, i), tokens)
        return jax.tree.map(lambda a, x: a + x.astype(jnp.float32), acc, out), None

      shapes = jax.eval_shape(grad_fn, train_params, frozen_params, jax.tree.map(lambda x: x[0], micro), rng, tokens)
      zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, jnp.float32), shapes)
      summed, _ = jax.lax.scan(accumulate, zeros, (micro, jnp.arange(k)))
      (total, terms), grads = jax.tree.map(lambda x: x / k, summed)
      grads = {p: g.astype(train_params[p].dtype) for p, g in grads.items()}
    state = state.apply_gradients(grads=traverse_util.unflatten_dict(grads))
    return state, {"loss": total, **terms, "grad_norm": optax.global_norm(jax.tree.map(lambda g: g.astype(jnp.float32), grads))}

  return jax.jit(step, in_shardings=(state_shardings, sharding.batch_sharding(mesh, rules), None),
                 out_shardings=(state_shardings, None), donate_argnums=(0,))

