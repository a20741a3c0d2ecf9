"""Image patches for the fold program's matmul convolutions (models/convs.py), beside the library's.

The fold program writes every convolution as (input patches) x (kernel matrix). The patches were
`jax.lax.conv_general_dilated_patches`, which XLA lowers to a convolution with an identity
kernel; `convs.image_patches` gathers the same tensor as k^2 slices of the padded input. This
times both (and each followed by STSTNet's 27 x 16 product, forward and the kernel's gradient)
at one device's share of an STSTNet fold step: 34 folds x 32 clips of 28 x 28 x 3 flow, 3 x 3
windows, padding 2. The last line printed is one JSON object.

  JAX_PLATFORMS=cpu XLA_FLAGS=--xla_force_host_platform_device_count=1 python benchmarks/conv_patches.py
"""

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np

import timing
from deft_jax.models import convs


def library_patches(x, kernel, padding):
  return jax.lax.conv_general_dilated_patches(x, (kernel, kernel), (1, 1), [(padding, padding)] * 2,
                                              dimension_numbers=("NHWC", "HWIO", "NHWC"))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--clips", type=int, default=34 * 32)
  parser.add_argument("--size", type=int, default=28)
  parser.add_argument("--kernel", type=int, default=3)
  parser.add_argument("--padding", type=int, default=2)
  parser.add_argument("--features", type=int, default=16)
  parser.add_argument("--repeats", type=int, default=10)
  args = parser.parse_args()
  x = jax.random.normal(jax.random.key(0), (args.clips, args.size, args.size, 3))
  w = jax.random.normal(jax.random.key(1), (3 * args.kernel ** 2, args.features))
  out = {"benchmark": "conv_patches", "clips": args.clips, "size": args.size, "kernel": args.kernel,
         "padding": args.padding, "features": args.features, "backend": jax.default_backend()}
  ours = lambda x: convs.image_patches(x, args.kernel, args.padding)
  library = lambda x: library_patches(x, args.kernel, args.padding)
  np.testing.assert_array_equal(jax.jit(ours)(x), jax.jit(library)(x))  # the same tensor, bit for bit
  for name, patches in (("deft_jax", ours), ("library", library)):
    gather = jax.jit(patches)
    # The kernel's gradient of a loss on the convolution's output: the fold step's use of it.
    step = jax.jit(jax.value_and_grad(lambda w, x: jnp.mean(jnp.maximum(patches(x) @ w, 0.0) ** 2)))
    for label, fn in (("patches", lambda: gather(x)), ("conv_step", lambda: step(w, x))):
      jax.block_until_ready(fn())
      seconds, _ = timing.best_of(lambda: jax.block_until_ready(fn()), args.repeats)
      out[f"{name}_{label}_ms"] = round(seconds * 1e3, 2)
  out["patches_speedup_vs_library"] = round(out["library_patches_ms"] / out["deft_jax_patches_ms"], 3)
  out["conv_step_speedup_vs_library"] = round(out["library_conv_step_ms"] / out["deft_jax_conv_step_ms"], 3)
  print(json.dumps(out))


if __name__ == "__main__":
  main()
