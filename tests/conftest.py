"""Tests run on 8 fake CPU devices so sharding code is exercised for real."""

import atexit
import os
import shutil
import tempfile

# LLVM at optimisation level 0: the tests compile far more than they compute, and XLA:CPU then
# compiles in about half the time (the suite: 1142 -> 905 s on 2 cores). Results agree to float32
# rounding, not bit for bit (the tiny job's losses after 8 steps: within 2e-7).
os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0", "--xla_force_host_platform_device_count=8"]
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _session_compilation_cache() -> None:
  """One persistent compilation cache for the session: its xdist workers and subprocess jobs.

  Many tests compile the same small programs (the tiny job's train step, the experts); reading
  them back instead roughly halved the CPU time of the training tests on 2 cores. The process
  that starts the session makes the folder and removes it at exit; xdist workers inherit it.
  A size limit is set only because it puts JAX's file lock around reads and writes.
  """
  if "JAX_COMPILATION_CACHE_DIR" in os.environ:
    return
  path = tempfile.mkdtemp(prefix="deft_jax_test_cache_")
  atexit.register(shutil.rmtree, path, ignore_errors=True)
  os.environ.update(JAX_COMPILATION_CACHE_DIR=path, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.2",
                    JAX_COMPILATION_CACHE_MAX_SIZE=str(8 << 30))


_session_compilation_cache()

import pytest  # noqa: E402


def pytest_configure(config):
  config.addinivalue_line("markers", "accelerator: needs a GPU or TPU; never run in CI")
  config.addinivalue_line("markers", "slow: end-to-end runs of a few minutes")


def pytest_collection_modifyitems(config, items):
  import jax

  if jax.default_backend() == "cpu":
    skip = pytest.mark.skip(reason="needs an accelerator")
    for item in items:
      if "accelerator" in item.keywords:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def synthetic_tiny(tmp_path_factory):
  """synthetic_me/tiny, built once per test session."""
  from deft_jax.data import build

  return build.prepare("synthetic_me/tiny", tmp_path_factory.mktemp("tfds"))
