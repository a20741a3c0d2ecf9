"""DEFT: experts -> projectors -> decoder LLM (+LoRA), with emotion and AU heads.

The sequence the LLM reads is a fixed prefix, then the text:

    <s> <structure> S... </structure> <texture> T... </texture> <motion> M... </motion> instruction answer

(with a chat template: system turn, user turn = experts + instruction, assistant turn = answer).

Expert tokens enter as embeddings between their marker tokens; the experts are whatever the
config lists (models/experts/registry.py), each reading its own batch key at its own size; one
that is switched off takes its markers with it. The emotion head reads the hidden state of the
last instruction token, which (causally) has seen every expert token and none of the answer.
"""

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from deft_jax.data import schema
from deft_jax.models import adversary as adversary_lib
from deft_jax.models import llm as llm_lib
from deft_jax.models import lora as lora_lib
from deft_jax.models.experts import encoder, registry


@dataclasses.dataclass(frozen=True)
class DeftConfig:
  llm: llm_lib.LlmConfig
  num_classes: int
  # Token ids before the experts (BOS, or a chat template's system turn and user-turn opening:
  # data/tokenizer.py:prompt_layout) and each expert's (open, close) markers.
  head_ids: tuple[int, ...]
  markers: tuple[tuple[int, int], ...]
  # (name, registry.Expert, its config) of each expert, in prefix order.
  expert_specs: tuple[tuple[str, registry.Expert, Any], ...] = ()
  lora: lora_lib.LoraConfig | None = None
  projector_hidden: int = 0  # 0: the LLM width
  # > 0: a domain adversary names each clip's subject (or corpus) among this many from the
  # emotion head's feature, through a gradient reversal (models/adversary.py); 0: none.
  adversary_classes: int = 0

  @property
  def experts(self) -> tuple[str, ...]:
    return tuple(name for name, _, _ in self.expert_specs)

  def expert(self, name: str):
    """The config of expert `name`, or None when it is not in the model."""
    return next((c for n, _, c in self.expert_specs if n == name), None)


class Projector(nn.Module):
  """Two-layer MLP from an expert's width to the LLM's (as LLaVA-1.5); also the domain adversary."""
  hidden: int
  out: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = encoder.dense(self.hidden, (None, "mlp"), self.dtype, self.param_dtype, "fc1")(x)
    return encoder.dense(self.out, ("mlp", "embed"), self.dtype, self.param_dtype, "fc2")(nn.gelu(x))


class DeftModel(nn.Module):
  config: DeftConfig
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  remat: str = "none"  # llm.REMAT_POLICIES
  scan_layers: bool = True

  def setup(self):
    c, dt, pdt = self.config, self.dtype, self.param_dtype
    width = c.llm.hidden_size
    self.experts = {name: spec.module(cfg, dt, pdt, name=name) for name, spec, cfg in c.expert_specs}
    self.projectors = {name: Projector(c.projector_hidden or width, width, dt, pdt, name=f"{name}_projector")
                       for name in c.experts}
    self.llm = llm_lib.DecoderLM(c.llm, c.lora, dt, pdt, self.remat, self.scan_layers)
    self.emotion_head = encoder.dense(c.num_classes, ("embed", None), dt, pdt, "emotion_head")
    if c.adversary_classes:
      self.adversary = Projector(width, c.adversary_classes, dt, pdt, name="adversary")

  def encode(self, batch, deterministic=True, drop: tuple[str, ...] = ()):
    """Prefix embeddings (B, P, D), and per-expert projected tokens, pooled features and AU logits.

    Experts named in `drop` leave the prefix (tokens and markers), to measure what each
    contributes at inference. AU logits come from the expert that emits them (the motion expert).
    """
    b = batch["text_ids"].shape[0]
    marker = lambda i: self.llm.embed(jnp.full((b, 1), i, jnp.int32))
    head = self.llm.embed(jnp.broadcast_to(jnp.asarray(self.config.head_ids, jnp.int32), (b, len(self.config.head_ids))))
    parts, pooled, projected, au_logits = [head], {}, {}, None
    for (name, spec, _), (open_id, close_id) in zip(self.config.expert_specs, self.config.markers):
      if name in drop:
        continue
      extras = {k: batch[k] for k in spec.extras if k in batch}
      out, aux = self.experts[name](batch[spec.reads], deterministic, **extras)
      au_logits = aux.get("au_logits", au_logits)
      tokens = self.projectors[name](out)
      projected[name] = tokens
      pooled[name] = tokens.mean(axis=1)
      parts += [marker(open_id), tokens.astype(self.dtype), marker(close_id)]
    return jnp.concatenate(parts, axis=1), {"pooled": pooled, "tokens": projected, "au_logits": au_logits}

  def __call__(self, batch, deterministic=True, drop: tuple[str, ...] = ()):
    """LM logits for the text tokens (next-token, aligned with text_ids), emotion and AU logits
    (and the adversary's, when the model has one)."""
    prefix, aux = self.encode(batch, deterministic, drop)
    text_ids, text_mask = batch["text_ids"], batch["text_mask"]
    p, n = prefix.shape[1], text_ids.shape[1]
    embeds = jnp.concatenate([prefix, self.llm.embed(text_ids)], axis=1)
    mask = jnp.concatenate([jnp.ones(prefix.shape[:2], jnp.int32), text_mask.astype(jnp.int32)], axis=1)
    logits, hidden = self.llm(inputs_embeds=embeds, attention_mask=mask, deterministic=deterministic,
                              return_hidden=True)
    cls = jnp.take_along_axis(hidden, (p + batch["prompt_len"] - 1)[:, None, None], axis=1)[:, 0]
    return {
        "lm_logits": logits[:, p - 1:p - 1 + n],  # position i predicts text token i
        "emotion_logits": self.emotion_head(cls).astype(jnp.float32),
        "au_logits": aux["au_logits"],
        "pooled": aux["pooled"],
        "feature": cls.astype(jnp.float32),  # what the emotion head reads (losses: contrast)
        "adversary_logits": (self.adversary(adversary_lib.reverse_gradient(cls)).astype(jnp.float32)
                             if self.config.adversary_classes else None),
    }

  def prompt(self, batch, prompt_len: int):
    """Embeddings and mask of prefix + instruction, for generation (one prompt length)."""
    prefix, _ = self.encode(batch)
    ids = batch["text_ids"][:, :prompt_len]
    embeds = jnp.concatenate([prefix, self.llm.embed(ids)], axis=1)
    return embeds, jnp.ones(embeds.shape[:2], jnp.int32)


def init_batch(config: DeftConfig, batch_size: int, text_len: int) -> dict:
  """A batch of zeros with the shapes the model reads (data/schema.py), for init and eval_shape."""
  return {k: jnp.asarray(v) for k, v in schema.zeros(config, batch_size, text_len).items()}


def language_model(model: DeftModel) -> llm_lib.DecoderLM:
  """The LLM of `model` as a standalone module; it applies to params["llm"]."""
  return llm_lib.DecoderLM(model.config.llm, model.config.lora, model.dtype, model.param_dtype, model.remat,
                          model.scan_layers)
