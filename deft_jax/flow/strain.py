"""What a flow field says about the face: optical strain, magnitude and direction."""

import jax.numpy as jnp

from deft_jax.flow import stencils


def optical_strain(flow):
  """Optical strain magnitude sqrt(u_x^2 + v_y^2 + 0.5 (u_y + v_x)^2), per pixel.

  The Frobenius norm of the infinitesimal strain tensor [[u_x, s], [s, v_y]] with shear
  s = (u_y + v_x) / 2 (Shreve et al., FG 2011). Published code disagrees on the shear term;
  this is the tensor norm. Derivatives are np.gradient's central differences.

  Args:
    flow: (..., H, W, 2) holding (dx, dy) in pixels.

  Returns:
    (..., H, W) strain, dimensionless.
  """
  flow = jnp.asarray(flow, jnp.float32)
  u_x, u_y = stencils.central_gradient(flow[..., 0])
  v_x, v_y = stencils.central_gradient(flow[..., 1])
  return jnp.sqrt(u_x ** 2 + v_y ** 2 + 0.5 * (u_y + v_x) ** 2)


def magnitude_direction(flow):
  """Per-pixel length (pixels) and direction (radians in (-pi, pi]) of (dx, dy) flow.

  Direction 0 points right (+x) and pi / 2 points down (+y, image rows grow downwards).
  """
  flow = jnp.asarray(flow, jnp.float32)
  dx, dy = flow[..., 0], flow[..., 1]
  return jnp.hypot(dx, dy), jnp.arctan2(dy, dx)
