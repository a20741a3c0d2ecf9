"""DEFT: three experts -> projectors -> decoder LLM (+LoRA), with emotion and AU heads.

The sequence the LLM reads is a fixed prefix, then the text:

    <s> <structure> S... </structure> <texture> T... </texture> <motion> M... </motion> instruction answer

Expert tokens enter as embeddings between their marker tokens; an expert that is switched off
in config takes its markers with it. The emotion head reads the hidden state of the last
instruction token, which (causally) has seen every expert token and none of the answer.
"""

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from deft_jax.models import llm as llm_lib
from deft_jax.models import lora as lora_lib
from deft_jax.models.experts import encoder
from deft_jax.models.experts.motion import MotionConfig, MotionExpert
from deft_jax.models.experts.structure import StructureConfig, StructureExpert
from deft_jax.models.experts.texture import TextureConfig, TextureExpert

EXPERTS = ("structure", "texture", "motion")


@dataclasses.dataclass(frozen=True)
class DeftConfig:
  llm: llm_lib.LlmConfig
  num_classes: int
  # Token ids of <s> and each expert's (open, close) markers.
  bos_id: int
  markers: tuple[tuple[int, int], ...]
  structure: StructureConfig | None = None
  texture: TextureConfig | None = None
  motion: MotionConfig | None = None
  lora: lora_lib.LoraConfig | None = None
  projector_hidden: int = 0  # 0: the LLM width

  @property
  def experts(self) -> tuple[str, ...]:
    return tuple(e for e in EXPERTS if getattr(self, e) is not None)


class Projector(nn.Module):
  """Two-layer MLP from an expert's width to the LLM's (as LLaVA-1.5)."""
  hidden: int
  out: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = encoder.dense(self.hidden, (None, "mlp"), self.dtype, self.param_dtype, "fc1")(x)
    return encoder.dense(self.out, ("mlp", "embed"), self.dtype, self.param_dtype, "fc2")(nn.gelu(x))


def _pixels(x):
  return x.astype(jnp.float32) / 127.5 - 1.0


def _at_size(images, size: int):
  """(..., S, S, 3) images (or flow) at an expert's own resolution (antialiased), so each expert
  reads its input at its own size: a fine-grained image tower beside a coarser video one, the
  motion expert at its flow_size whatever size the dataset stores the flow at."""
  if images.shape[-2] == size:
    return images
  return jax.image.resize(images, images.shape[:-3] + (size, size, images.shape[-1]), "linear", antialias=True)


class DeftModel(nn.Module):
  config: DeftConfig
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  remat: bool = False

  def setup(self):
    c, dt, pdt = self.config, self.dtype, self.param_dtype
    width = c.llm.hidden_size
    modules = {"structure": StructureExpert, "texture": TextureExpert, "motion": MotionExpert}
    self.experts = {e: modules[e](getattr(c, e), dt, pdt, name=e) for e in c.experts}
    self.projectors = {e: Projector(c.projector_hidden or width, width, dt, pdt, name=f"{e}_projector")
                       for e in c.experts}
    self.llm = llm_lib.DecoderLM(c.llm, c.lora, dt, pdt, self.remat)
    self.emotion_head = encoder.dense(c.num_classes, ("embed", None), dt, pdt, "emotion_head")

  def encode(self, batch, deterministic=True, drop: tuple[str, ...] = ()):
    """Prefix embeddings (B, P, D), and per-expert projected tokens, pooled features and AU logits.

    Experts named in `drop` leave the prefix (tokens and markers), to measure what each
    contributes at inference.
    """
    c = self.config
    inputs = {"structure": lambda: _at_size(_pixels(batch["keyframes"]), c.structure.image_size),
              "texture": lambda: _at_size(_pixels(batch["clip"]), c.texture.image_size),
              "motion": lambda: _at_size(batch["flow"], c.motion.flow_size)}
    b = batch["text_ids"].shape[0]
    marker = lambda i: self.llm.embed(jnp.full((b, 1), i, jnp.int32))
    parts, pooled, projected, au_logits = [marker(self.config.bos_id)], {}, {}, None
    for name, (open_id, close_id) in zip(self.config.experts, self.config.markers):
      if name in drop:
        continue
      out = self.experts[name](inputs[name](), deterministic)
      if name == "motion":
        out, au_logits = out
      tokens = self.projectors[name](out)
      projected[name] = tokens
      pooled[name] = tokens.mean(axis=1)
      parts += [marker(open_id), tokens.astype(self.dtype), marker(close_id)]
    return jnp.concatenate(parts, axis=1), {"pooled": pooled, "tokens": projected, "au_logits": au_logits}

  def __call__(self, batch, deterministic=True, drop: tuple[str, ...] = ()):
    """LM logits for the text tokens (next-token, aligned with text_ids), emotion and AU logits."""
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
    }

  def prompt(self, batch, prompt_len: int):
    """Embeddings and mask of prefix + instruction, for generation (one prompt length)."""
    prefix, _ = self.encode(batch)
    ids = batch["text_ids"][:, :prompt_len]
    embeds = jnp.concatenate([prefix, self.llm.embed(ids)], axis=1)
    return embeds, jnp.ones(embeds.shape[:2], jnp.int32)


def init_batch(config: DeftConfig, batch_size: int, text_len: int) -> dict:
  """A batch of zeros with the shapes the model reads, for init and eval_shape."""
  s, t, m = config.structure, config.texture, config.motion
  img = max((e.image_size for e in (s, t) if e), default=8)  # each expert resizes to its own
  frames = t.num_frames if t else 2
  flow = m.flow_size if m else 8
  return {
      "keyframes": jnp.zeros((batch_size, 2, img, img, 3), jnp.uint8),
      "clip": jnp.zeros((batch_size, frames, img, img, 3), jnp.uint8),
      "flow": jnp.zeros((batch_size, flow, flow, 3), jnp.float32),
      "text_ids": jnp.zeros((batch_size, text_len), jnp.int32),
      "text_mask": jnp.ones((batch_size, text_len), jnp.int32),
      "prompt_len": jnp.ones((batch_size,), jnp.int32),
  }


def language_model(model: DeftModel) -> llm_lib.DecoderLM:
  """The LLM of `model` as a standalone module; it applies to params["llm"]."""
  return llm_lib.DecoderLM(model.config.llm, model.config.lora, model.dtype, model.param_dtype, model.remat)
