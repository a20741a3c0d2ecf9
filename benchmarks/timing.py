"""The benchmarks' timer: the best of a few runs, on the wall clock."""

import time


def best_of(fn, repeats: int = 2):
  """(fastest wall seconds of `repeats` calls of fn, the last call's result)."""
  best, out = float("inf"), None
  for _ in range(repeats):
    start = time.perf_counter()
    out = fn()
    best = min(best, time.perf_counter() - start)
  return best, out
