"""A ViT image tower laid out like Hugging Face's SigLIP and CLIP vision models.

The two differ in three places, each a flag here: CLIP prepends a class token (and its
position), normalises the embeddings before the encoder (`pre_layrnorm`) and leaves the last
hidden state unnormalised; SigLIP has neither token nor pre-norm and normalises every output
token (`post_layernorm`). With weights from vision_hf.load, `VisionTransformer(x)` equals the
PyTorch model's last_hidden_state (tests/test_vision_parity.py).
"""

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from deft_jax.models.experts import encoder as encoder_lib

SIGLIP_PIXELS = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
CLIP_PIXELS = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))


@dataclasses.dataclass(frozen=True)
class ViTConfig:
  encoder: encoder_lib.EncoderConfig = encoder_lib.EncoderConfig()
  image_size: int = 64
  patch: int = 16
  class_token: bool = False
  pre_norm: bool = False
  final_norm: bool = True
  patch_bias: bool = True
  # Pixel normalisation the weights expect, on [0, 1] intensities: (mean, std) per channel.
  pixel_mean: tuple[float, float, float] = SIGLIP_PIXELS[0]
  pixel_std: tuple[float, float, float] = SIGLIP_PIXELS[1]

  def __post_init__(self):
    if self.image_size % self.patch:
      raise ValueError(f"image_size {self.image_size} is not a multiple of the patch size {self.patch}")

  @property
  def grid(self) -> int:
    return self.image_size // self.patch

  @property
  def num_positions(self) -> int:
    return self.grid ** 2 + int(self.class_token)


def normalise(pixels, config: ViTConfig):
  """[0, 1] pixels (registry.unit_pixels) -> the normalisation the weights were trained on."""
  return (pixels - jnp.asarray(config.pixel_mean, pixels.dtype)) / jnp.asarray(config.pixel_std, pixels.dtype)


class VisionTransformer(nn.Module):
  """Images (B, S, S, 3), normalised as the config says -> tokens (B, N (+1), width)."""
  config: ViTConfig
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def setup(self):
    c, dt, pdt = self.config, self.dtype, self.param_dtype
    width = c.encoder.width
    self.patch_embed = encoder_lib.patch_conv(width, (c.patch, c.patch), dt, pdt, "patch_embed", c.patch_bias)
    self.position_embedding = encoder_lib.position_embedding(self, "position_embedding", (c.num_positions, width))
    if c.class_token:
      self.class_embedding = encoder_lib.position_embedding(self, "class_embedding", (width,))
    if c.pre_norm:
      self.pre_layernorm = encoder_lib.layer_norm(c.encoder.layer_norm_eps, dt, pdt, "pre_layernorm")
    self.encoder = encoder_lib.Encoder(c.encoder, dt, pdt, final_norm=c.final_norm, name="encoder")

  def embed(self, images):
    """Patch tokens (+ class token) with positions, pre-normalised where the model does."""
    x = self.patch_embed(images.astype(self.dtype))
    b = x.shape[0]
    x = x.reshape(b, -1, x.shape[-1])
    if self.config.class_token:
      cls = jnp.broadcast_to(self.class_embedding.astype(x.dtype), (b, 1, x.shape[-1]))
      x = jnp.concatenate([cls, x], axis=1)
    x = x + self.position_embedding.astype(x.dtype)
    return self.pre_layernorm(x) if self.config.pre_norm else x

  def encode(self, tokens, deterministic=True):
    return self.encoder(tokens, deterministic)

  def __call__(self, images, deterministic=True):
    return self.encode(self.embed(images), deterministic)


def resize_positions(table: np.ndarray, class_token: bool, grid: int) -> np.ndarray:
  """A (N (+1), D) position table for another square patch grid: bicubic on the patch part
  (as transformers' interpolate_pos_encoding), the class position kept."""
  import jax  # pylint: disable=import-outside-toplevel
  head, patches = (table[:1], table[1:]) if class_token else (table[:0], table)
  old = int(round(np.sqrt(len(patches))))
  if old * old != len(patches):
    raise ValueError(f"{len(patches)} patch positions do not form a square grid")
  if old == grid:
    return table
  square = patches.reshape(old, old, -1)
  resized = np.asarray(jax.image.resize(square, (grid, grid, square.shape[-1]), "bicubic"))
  return np.concatenate([head, resized.reshape(grid * grid, -1)]).astype(table.dtype)
