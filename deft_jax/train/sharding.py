"""Device mesh and logical-axis sharding, from config.

One table of logical -> mesh axis rules (config.sharding_rules) serves every topology:
parameters carry logical names (nn.with_logical_partitioning), batches and activations are
split on "batch" (nn.with_logical_constraint), so a new mesh is a config change only.
"""

import math
from collections.abc import Mapping
import warnings

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")
# The rules table configs/synthetic.py carries; the default where no config is at hand (a bare
# HF load, a benchmark). Batches split over every data-parallel axis.
DEFAULT_RULES = (
    ("batch", ("data", "fsdp")), ("vocab", "tensor"), ("embed", "fsdp"), ("mlp", "tensor"),
    ("heads", "tensor"), ("kv_heads", "tensor"), ("head_dim", None), ("norm", None), ("lora_rank", None),
    ("layers", None),
)


class ShardingWarning(UserWarning):
  """A parameter dimension that does not divide over the mesh axes its logical name maps to."""


def mesh_sizes(mesh_cfg, num_devices: int) -> dict[str, int]:
  """Axis sizes (data, fsdp, tensor) from config; one size may be -1 (the devices left over)."""
  sizes = [int(mesh_cfg[a]) for a in MESH_AXES]
  if sizes.count(-1) > 1:
    raise ValueError(f"mesh: at most one axis may be -1, got {dict(zip(MESH_AXES, sizes))}")
  known = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if num_devices % known:
      raise ValueError(f"mesh: {num_devices} devices do not divide by {known} ({dict(zip(MESH_AXES, sizes))})")
    sizes[sizes.index(-1)] = num_devices // known
  if math.prod(sizes) != num_devices:
    raise ValueError(f"mesh {dict(zip(MESH_AXES, sizes))} needs {math.prod(sizes)} devices, have {num_devices}")
  return dict(zip(MESH_AXES, sizes))


def make_mesh(mesh_cfg, devices=None) -> jax.sharding.Mesh:
  """Mesh (data, fsdp, tensor) sized from config over `devices` (default: all of them)."""
  devices = devices if devices is not None else jax.devices()
  sizes = mesh_sizes(mesh_cfg, len(devices))
  return jax.make_mesh(tuple(sizes.values()), MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * 3,
                       devices=devices)


def rules(cfg) -> tuple[tuple[str, object], ...]:
  return tuple((name, tuple(axes) if isinstance(axes, list) else axes) for name, axes in cfg.sharding_rules)


def mesh_axes(names, logical_rules, mesh) -> list:
  """Mesh axes per dimension for logical `names`: the first rule whose axes exist in `mesh` and
  are not yet used by an earlier dimension wins (flax.linen.logical_to_mesh's order)."""
  if isinstance(logical_rules, Mapping):
    logical_rules = logical_rules.items()
  used, out = set(), []
  for name in names:
    chosen = None
    for logical, axes in logical_rules:
      if logical != name or name is None:
        continue
      if axes is None:
        break
      axes = (axes,) if isinstance(axes, str) else tuple(axes)
      if any(a not in mesh.shape or a in used for a in axes):
        continue
      used.update(axes)
      chosen = axes if len(axes) > 1 else axes[0]
      break
    out.append(chosen)
  return out


def checked_spec(path: str, shape, axes, mesh) -> P:
  """PartitionSpec of `axes` per dimension; a dimension that does not divide over its mesh axes
  is replicated and reported (ShardingWarning naming the parameter, dimension and axes)."""
  spec = []
  for dim, (size, ax) in enumerate(zip(shape, axes)):
    if ax is not None:
      n = math.prod(mesh.shape[a] for a in ((ax,) if isinstance(ax, str) else ax))
      if size % n:
        warnings.warn(f"{path}: dimension {dim} of size {size} does not divide over mesh axis {ax} "
                      f"({n} devices); it is replicated", ShardingWarning, stacklevel=3)
        ax = None
    spec.append(ax)
  return P(*spec)


def resolve(tree, mesh, logical_rules=DEFAULT_RULES):
  """NamedShardings for a tree of (possibly nn.LogicallyPartitioned) leaves from the rules table.

  The one resolver: train state, HF loading and LoRA placement all come through here. Unnamed
  leaves replicate; dimensions that do not divide are reported and replicated.
  """
  def one(path, leaf):
    names = leaf.names if isinstance(leaf, nn.LogicallyPartitioned) else ()
    value = leaf.value if isinstance(leaf, nn.LogicallyPartitioned) else leaf
    shape = getattr(value, "shape", ())
    axes = mesh_axes(names, logical_rules, mesh) if names else [None] * len(shape)
    return NamedSharding(mesh, checked_spec(jax.tree_util.keystr(path, simple=True, separator="/"), shape, axes, mesh))

  return jax.tree_util.tree_map_with_path(one, tree, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))


def batch_sharding(mesh, logical_rules=DEFAULT_RULES) -> NamedSharding:
  """Rows split as the rules place the logical "batch" axis."""
  return NamedSharding(mesh, nn.logical_to_mesh_axes(("batch",), logical_rules))


def constrain(x, axes: tuple[str | None, ...], mesh, logical_rules):
  """`x` laid out by logical `axes` inside a jitted function (a hint XLA must follow)."""
  return nn.with_logical_constraint(x, axes, mesh=mesh, rules=logical_rules)


def global_batch(local_batch: dict, mesh, logical_rules=DEFAULT_RULES) -> dict:
  """Assembles each process's rows into global arrays sharded as the "batch" rule says."""
  sharding = batch_sharding(mesh, logical_rules)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch)
