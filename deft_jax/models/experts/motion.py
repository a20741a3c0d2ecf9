"""Motion-semantics expert: onset->apex flow (u, v, strain) -> one token per face region.

Tokens line up with the regions named in the answers' cues, and an AU head reads them, so the
expert's vocabulary is the one the LLM is taught to speak. The flow enters in pixels (scaled
by flow_scale), keeping absolute magnitude, which the Uni-MER text grades as slight / clear /
strong.

Region tokens pool the encoder's patch tokens:
  "mean":      weighted by the share of each patch's pixels inside the region;
  "attention": a learned query per region attends over the patches, its logits biased by the
               log of that share so that it never looks outside the region (masked multi-head
               attention pooling, as SigLIP's MAP head, restricted to a region).

The regions are the canonical boxes, or the clip's own when the batch carries them
(`region_boxes`, (B, R, 4) canonical x0, y0, x1, y1 placed by the face's landmarks,
deft_jax/facs/regions.place_regions), so a token pools the skin its name says.
"""

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from deft_jax.facs import catalogue, regions
from deft_jax.models import convs
from deft_jax.models.experts import encoder as encoder_lib
from deft_jax.models.experts import registry

POOLINGS = ("mean", "attention")
# "patch": the flow is cut into patches directly; "conv": a 3x3 convolution (stem_width
# channels, GELU) first, a local inductive bias for small (28 px) flow fields; "streams":
# STSTNet's shallow triple stream (Liong et al., MEGC2019): parallel 3x3 convolutions of
# stem_filters channels (ReLU), concatenated and max-pooled over each patch, one token per patch.
STEMS = ("patch", "conv", "streams")


@dataclasses.dataclass(frozen=True)
class MotionConfig:
  encoder: encoder_lib.EncoderConfig = encoder_lib.EncoderConfig()
  flow_size: int = 64
  patch: int = 8
  flow_scale: float = 1.0  # px that count as one unit of input
  pooling: str = "mean"
  stem: str = "patch"
  stem_width: int = 16
  stem_filters: tuple[int, ...] = (3, 5, 8)
  # Tokens after the regions': the whole stem map (grid x grid x channels), flattened and
  # projected to this many tokens, keeping the spatial layout that region pooling averages away
  # (STSTNet's classifier reads this map the same way).
  summary_tokens: int = 0

  def __post_init__(self):
    if self.summary_tokens < 0:
      raise ValueError(f"motion summary_tokens {self.summary_tokens}; use 0 (none) or more")
    if self.pooling not in POOLINGS:
      raise ValueError(f"motion pooling {self.pooling!r}; use one of {POOLINGS}")
    if self.stem not in STEMS:
      raise ValueError(f"motion stem {self.stem!r}; use one of {STEMS}")


def config_from(node) -> MotionConfig:
  return MotionConfig(encoder_lib.EncoderConfig(**node.encoder.to_dict()), node.flow_size, node.patch,
                      node.flow_scale, node.pooling, node.get("stem", "patch"),
                      node.get("stem_width", 16), tuple(node.get("stem_filters", (3, 5, 8))),
                      node.get("summary_tokens", 0))


def region_weights(size: int, patch: int) -> np.ndarray:
  """(R, grid*grid) weights averaging patch tokens by their share of each face region."""
  shares = regions.patch_shares(size, patch).reshape(len(catalogue.REGIONS), -1)
  return shares / np.maximum(shares.sum(-1, keepdims=True), 1e-6)


def region_weights_from_boxes(boxes, size: int, patch: int):
  """(B, R, grid*grid) patch weights of per-clip region boxes (B, R, 4), as region_weights.

  A box is a product of an x and a y interval, so a patch's share of it is the product of
  its shares along each axis; pixel centres span [-1, 1] as in regions.region_masks.
  """
  g = regions.grid_size(size, patch, "flow")
  coords = jnp.linspace(-1.0, 1.0, size)
  boxes = jnp.asarray(boxes, jnp.float32)

  def share(lo, hi):  # (B, R) -> (B, R, g)
    inside = (coords >= lo[..., None]) & (coords <= hi[..., None])
    return inside.astype(jnp.float32).reshape(*lo.shape, g, patch).mean(-1)

  sx, sy = share(boxes[..., 0], boxes[..., 2]), share(boxes[..., 1], boxes[..., 3])
  shares = (sy[..., :, None] * sx[..., None, :]).reshape(*boxes.shape[:2], g * g)
  return shares / jnp.maximum(shares.sum(-1, keepdims=True), 1e-6)


class RegionPool(nn.Module):
  """One learned query per region; attention over patches, masked to the region."""
  config: encoder_lib.EncoderConfig
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, shares):
    """x (B, N, D) patch tokens, shares (R, N) or per clip (B, R, N) -> (B, R, D)."""
    c = self.config
    b, n, d = x.shape
    hd = d // c.heads
    queries = self.param("queries", nn.with_logical_partitioning(nn.initializers.normal(0.02), (None, "embed")),
                         (shares.shape[-2], d), self.param_dtype)
    q = encoder_lib.dense(d, ("embed", "heads"), self.dtype, self.param_dtype, "q_proj")(queries).reshape(-1, c.heads, hd)
    k = encoder_lib.dense(d, ("embed", "heads"), self.dtype, self.param_dtype, "k_proj")(x).reshape(b, n, c.heads, hd)
    v = encoder_lib.dense(d, ("embed", "heads"), self.dtype, self.param_dtype, "v_proj")(x).reshape(b, n, c.heads, hd)
    # The log share biases each region's query to its own patches (-20.7 outside: log 1e-9).
    bias = jnp.log(jnp.maximum(jnp.asarray(shares, jnp.float32), 1e-9))
    bias = bias[:, None] if bias.ndim == 3 else bias[None, None]  # (B or 1, 1, R, N)
    q = jnp.broadcast_to(q[None], (b,) + q.shape)
    out = jax.nn.dot_product_attention(q, k, v, bias=bias.astype(q.dtype)).reshape(b, -1, d)
    return encoder_lib.dense(d, ("heads", "embed"), self.dtype, self.param_dtype, "out_proj")(out)


class MotionExpert(nn.Module):
  config: MotionConfig
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, flow, deterministic=True, region_boxes=None):
    """flow (B, S', S', 3), any S'; region_boxes (B, R, 4) or None (canonical boxes)
    -> (region tokens (B, R, width) [+ the summary tokens], {"au_logits": (B, NUM_AUS)})."""
    c = self.config
    flow = registry.resize_flow(flow.astype(jnp.float32), c.flow_size)
    x = flow / c.flow_scale
    regions.grid_size(flow.shape[1], c.patch, "motion: flow")  # the flow must tile into patches
    conv = lambda features, name: convs.PatchConv(features, 3, 1, self.dtype, self.param_dtype, (None,) * 4, name=name)
    if c.stem == "streams":
      x = jnp.concatenate([nn.relu(conv(f, f"stem_conv{i}")(x)) for i, f in enumerate(c.stem_filters)], -1)
      x = convs.max_pool(x, c.patch)
      x = encoder_lib.patch_embed(x, c.encoder.width, (1, 1), self.dtype, self.param_dtype, "patch_embed")
    else:
      if c.stem == "conv":
        x = nn.gelu(conv(c.stem_width, "stem_conv")(x))
      x = encoder_lib.patch_embed(x, c.encoder.width, (c.patch, c.patch), self.dtype,
                                  self.param_dtype, "patch_embed")
    b, h, w, d = x.shape
    summary = encoder_lib.dense(c.summary_tokens * d, (None, "embed"), self.dtype, self.param_dtype, "summary")(
        x.reshape(b, h * w * d)).reshape(b, c.summary_tokens, d) if c.summary_tokens else None
    x = x + encoder_lib.position_embedding(self, "position_embedding", (1, h, w, d))
    x = encoder_lib.Encoder(c.encoder, self.dtype, self.param_dtype, name="encoder")(
        x.reshape(b, h * w, d).astype(self.dtype), deterministic)
    if region_boxes is None:
      weights = region_weights(flow.shape[1], c.patch)
      tokens = jnp.einsum("rn,bnd->brd", jnp.asarray(weights, self.dtype), x)
    else:
      weights = region_weights_from_boxes(region_boxes, flow.shape[1], c.patch)
      tokens = jnp.einsum("brn,bnd->brd", weights.astype(self.dtype), x)
    if c.pooling == "attention":
      tokens = tokens + RegionPool(c.encoder, self.dtype, self.param_dtype, name="region_pool")(x, weights)
    # Each AU belongs to a region, so the head sees every region's token in its place.
    regional = tokens
    if summary is not None:
      tokens = jnp.concatenate([tokens, summary.astype(tokens.dtype)], axis=1)
    au_logits = encoder_lib.dense(catalogue.NUM_AUS, (None, None), self.dtype, self.param_dtype, "au_head")(
        regional.reshape(b, -1))
    return tokens, {"au_logits": au_logits.astype(jnp.float32)}


EXPERT = registry.Expert(reads="flow", config_from=config_from, module=MotionExpert,
                         input_shape=lambda c: (c.flow_size, c.flow_size, 3), extras=("region_boxes",))
