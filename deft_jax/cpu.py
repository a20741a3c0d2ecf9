"""How many cores this process may run on (its CPU affinity, not the host's count)."""

import os


def usable_cores() -> int:
  """Cores in this process's affinity mask, where the OS has one; else the host's count."""
  if hasattr(os, "sched_getaffinity"):
    return len(os.sched_getaffinity(0))
  return os.cpu_count() or 1
