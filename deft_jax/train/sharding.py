"""Device mesh and logical-axis sharding, from config.

One table of logical -> mesh axis rules (config.sharding_rules) serves every topology:
parameters carry logical names (nn.with_logical_partitioning), batches and activations are
split on "batch" (nn.with_logical_constraint), so a new mesh is a config change only.
"""

import math

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")
# Without a rules table, batches split over every data-parallel axis.
DEFAULT_RULES = (("batch", ("data", "fsdp")),)


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


def logical_shardings(abstract_tree, mesh, logical_rules):
  """NamedShardings for a tree of (possibly nn.Partitioned) leaves; unnamed leaves replicate."""
  specs = nn.get_partition_spec(abstract_tree)
  mesh_specs = nn.logical_to_mesh(specs, logical_rules)
  return jax.tree.map(lambda s: NamedSharding(mesh, s), mesh_specs, is_leaf=lambda x: isinstance(x, P))


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
