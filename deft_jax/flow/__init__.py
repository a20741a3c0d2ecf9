"""Optical flow in JAX: TV-L1 (batched, jitted), optical strain, apex spotting."""

from deft_jax.flow.apex import Apex
from deft_jax.flow.apex import face_ellipse
from deft_jax.flow.apex import spot_apex
from deft_jax.flow.dual_tvl1 import CONSECUTIVE_FRAMES
from deft_jax.flow.dual_tvl1 import SKIMAGE_COMPATIBLE
from deft_jax.flow.dual_tvl1 import TVL1Params
from deft_jax.flow.dual_tvl1 import tvl1
from deft_jax.flow.strain import magnitude_direction
from deft_jax.flow.strain import optical_strain
