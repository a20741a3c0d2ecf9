"""Tests run on 8 fake CPU devices so sharding code is exercised for real."""

import os

os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=8"]
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

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
