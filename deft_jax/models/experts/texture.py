"""Dynamic-texture expert: how appearance changes over the clip (ViViT, Arnab et al. 2021).

Tubelets (t x p x p) become tokens with space and time positions; attention is either
  "joint":      every token attends to every other (ViViT model 1), or
  "factorised": each layer attends within a frame, then across frames at each place, then
                runs its MLP (ViViT model 3, factorised self-attention), cheaper for long clips.
The output is one token per spatial place, averaged over time.

Initialisation from an image ViT (a SigLIP/CLIP vision checkpoint, config
`model.texture.checkpoint`): the tubelet kernel is the 2-D patch kernel inflated over time
(Carreira & Zisserman's I3D "average": repeated and divided by t; ViViT's "central": the 2-D
kernel on the middle frame, zeros elsewhere) so a static clip embeds as the image would; the
space positions, the spatial attention and the MLPs are copied; the temporal attention's
output projection starts at zero, so each factorised layer is the image layer at init.
"""

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from deft_jax.models.experts import encoder as encoder_lib
from deft_jax.models.experts import registry, vision_hf
from deft_jax.models.experts import vit as vit_lib

ATTENTIONS = ("joint", "factorised")
INFLATIONS = ("average", "central")


@dataclasses.dataclass(frozen=True)
class TextureConfig:
  """vit gives width, depth, patch size and norms (its class token is not used)."""
  vit: vit_lib.ViTConfig = vit_lib.ViTConfig()
  num_frames: int = 8
  tubelet_frames: int = 2
  attention: str = "joint"
  checkpoint: str = ""  # an image ViT checkpoint to inflate from; "" = random init
  inflation: str = "average"

  def __post_init__(self):
    if self.attention not in ATTENTIONS:
      raise ValueError(f"texture attention {self.attention!r}; use one of {ATTENTIONS}")
    if self.inflation not in INFLATIONS:
      raise ValueError(f"texture inflation {self.inflation!r}; use one of {INFLATIONS}")
    if self.num_frames % self.tubelet_frames:
      raise ValueError(f"{self.num_frames} frames do not split into tubelets of {self.tubelet_frames}")

  @property
  def image_size(self) -> int:
    return self.vit.image_size

  @property
  def tubelet(self) -> tuple[int, int, int]:
    return (self.tubelet_frames, self.vit.patch, self.vit.patch)


def config_from(node) -> TextureConfig:
  """From config.model.texture (tubelet = (t, p, p)); a checkpoint sets the architecture."""
  t, ph, pw = node.tubelet
  if ph != pw:
    raise ValueError(f"model.texture.tubelet {tuple(node.tubelet)}: patches must be square")
  if node.checkpoint:
    tower = dataclasses.replace(vision_hf.vit_config(node.checkpoint, node.image_size), class_token=False)
  else:
    tower = vit_lib.ViTConfig(encoder_lib.EncoderConfig(**node.encoder.to_dict()), node.image_size, ph)
  return TextureConfig(tower, node.num_frames, t, node.attention, node.checkpoint, node.inflation)


class FactorisedLayer(nn.Module):
  """Spatial attention, temporal attention, MLP; each pre-normed and residual (ViViT model 3)."""
  config: encoder_lib.EncoderConfig
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, deterministic=True):
    """x (B, T, N, D)."""
    c, dt, pdt = self.config, self.dtype, self.param_dtype
    b, t, n, d = x.shape
    drop = lambda y: nn.Dropout(c.dropout)(y, deterministic)
    y = encoder_lib.layer_norm(c.layer_norm_eps, dt, pdt, "layer_norm1")(x).reshape(b * t, n, d)
    x = x + drop(encoder_lib.SelfAttention(c, dt, pdt, name="self_attn")(y).reshape(b, t, n, d))
    y = encoder_lib.layer_norm(c.layer_norm_eps, dt, pdt, "layer_norm_time")(x)
    y = y.transpose(0, 2, 1, 3).reshape(b * n, t, d)
    y = encoder_lib.SelfAttention(c, dt, pdt, zero_out=True, name="temporal_attn")(y)
    x = x + drop(y.reshape(b, n, t, d).transpose(0, 2, 1, 3))
    y = encoder_lib.layer_norm(c.layer_norm_eps, dt, pdt, "layer_norm2")(x)
    y = encoder_lib.dense(c.mlp, ("embed", "mlp"), dt, pdt, "fc1")(y)
    y = encoder_lib.dense(c.width, ("mlp", "embed"), dt, pdt, "fc2")(encoder_lib.ACTIVATIONS[c.activation](y))
    return x + drop(y)


class TextureExpert(nn.Module):
  config: TextureConfig
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def setup(self):
    c, dt, pdt = self.config, self.dtype, self.param_dtype
    v = c.vit
    self.tubelet_embed = encoder_lib.patch_conv(v.encoder.width, c.tubelet, dt, pdt, "tubelet_embed", v.patch_bias)
    grid, steps = v.grid, c.num_frames // c.tubelet_frames
    self.space_embedding = encoder_lib.position_embedding(self, "space_embedding", (1, 1, grid, grid, v.encoder.width))
    self.time_embedding = encoder_lib.position_embedding(self, "time_embedding", (1, steps, 1, 1, v.encoder.width))
    if v.pre_norm:
      self.pre_layernorm = encoder_lib.layer_norm(v.encoder.layer_norm_eps, dt, pdt, "pre_layernorm")
    layer = None if c.attention == "joint" else FactorisedLayer
    self.encoder = encoder_lib.Encoder(v.encoder, dt, pdt, final_norm=v.final_norm, layer=layer, name="encoder")

  def embed_tubelets(self, clip):
    """clip (B, T, S, S, 3), already normalised -> tubelet tokens (B, T / t, S / p, S / p, D)."""
    return self.tubelet_embed(clip.astype(self.dtype))

  def __call__(self, clip, deterministic=True):
    """clip (B, T, S', S', 3) uint8, any S' -> (tokens (B, N, width), one per spatial tubelet; {})."""
    return self.encode(registry.resize(registry.unit_pixels(clip), self.config.image_size), deterministic), {}

  def encode(self, clip, deterministic=True):
    """clip (B, T, S, S, 3) in [0, 1] at the expert's size -> tokens (B, N, width)."""
    x = self.embed_tubelets(vit_lib.normalise(clip, self.config.vit))
    x = x + self.space_embedding.astype(x.dtype) + self.time_embedding.astype(x.dtype)
    b, t, h, w, d = x.shape
    x = x.reshape(b, t, h * w, d)
    if self.config.vit.pre_norm:
      x = self.pre_layernorm(x)
    if self.config.attention == "joint":
      x = self.encoder(x.reshape(b, t * h * w, d), deterministic).reshape(b, t, h * w, d)
    else:
      x = self.encoder(x, deterministic)
    return x.mean(axis=1)


def inflate_kernel(kernel: np.ndarray, frames: int, method: str = "average") -> np.ndarray:
  """A 2-D patch kernel (p, p, C, D) -> a tubelet kernel (frames, p, p, C, D).

  Either way, a clip whose frames are all the same image embeds as that image does.
  """
  kernel = np.asarray(kernel)
  if method == "average":
    return np.repeat(kernel[None], frames, axis=0) / frames
  if method == "central":
    out = np.zeros((frames,) + kernel.shape, kernel.dtype)
    out[frames // 2] = kernel
    return out
  raise ValueError(f"inflation {method!r}; use one of {INFLATIONS}")


def inflate(image_params: dict, config: TextureConfig) -> dict:
  """TextureExpert params taken from VisionTransformer params (vision_hf.load's layout).

  Returns only the params that come from the image model; the time positions and the
  temporal attention keep their initialisation.
  """
  v = config.vit
  out = {"tubelet_embed": {"kernel": inflate_kernel(image_params["patch_embed"]["kernel"], config.tubelet_frames,
                                                    config.inflation)}}
  if v.patch_bias:
    out["tubelet_embed"]["bias"] = np.asarray(image_params["patch_embed"]["bias"])
  positions = np.asarray(image_params["position_embedding"])
  if "class_embedding" in image_params:
    positions = positions[1:]
  positions = vit_lib.resize_positions(positions, False, v.grid)
  out["space_embedding"] = positions.reshape(1, 1, v.grid, v.grid, -1)
  if v.pre_norm:
    out["pre_layernorm"] = image_params["pre_layernorm"]
  out["encoder"] = {k: v_ for k, v_ in image_params["encoder"].items()}
  return out


def _pretrained(config: TextureConfig) -> dict:
  if not config.checkpoint:
    return {}
  from flax import traverse_util  # pylint: disable=import-outside-toplevel
  _, params = vision_hf.load(config.checkpoint, config.image_size)
  return traverse_util.flatten_dict(inflate(params, config))


EXPERT = registry.Expert(
    reads="clip", config_from=config_from, module=TextureExpert, pretrained=_pretrained,
    input_shape=lambda c: (c.num_frames, c.image_size, c.image_size, 3))
