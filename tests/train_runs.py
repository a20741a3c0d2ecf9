"""Helpers for the tests that run `deft-jax train` in subprocesses (resume, multi-host, sweep).

Every such run uses the same tiny job (RUN_OVERRIDES) and the session's persistent compilation
cache (tests/conftest.py), so only the first run of each device layout compiles.
"""

import json
import os
import shutil
import socket
import subprocess
import sys

from deft_jax.data import tokenizer as tokenizer_lib

STEPS = 8
RUN_OVERRIDES = (f"--config.train.steps={STEPS}", "--config.train.log_every=1", "--config.train.checkpoint_every=2",
                 "--config.train.generate_examples=0", "--config.train.expert_contributions=False")


def session_dir(tmp_path_factory, name: str) -> str:
  """A folder shared by every test of the session (created on first use)."""
  path = tmp_path_factory.getbasetemp() / name
  path.mkdir(exist_ok=True)
  return str(path)


def tokenizer(tmp_path_factory, vocab: int = 1024) -> str:
  """One trained tokenizer for every run, so runs do not train their own."""
  path = os.path.join(session_dir(tmp_path_factory, "runs"), "tokenizer")
  if not os.path.isdir(path):
    tokenizer_lib.train_tokenizer(path, vocab)
  return path


def data_root(synthetic_tiny) -> str:
  return os.path.dirname(os.path.dirname(os.path.dirname(synthetic_tiny.data_dir)))


def env(tmp_path_factory, devices: int = 8) -> dict:
  out = dict(os.environ)
  count = "--xla_force_host_platform_device_count"  # the session's other flags (tests/conftest.py) carry over
  flags = " ".join(f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith(count))
  out.update(XLA_FLAGS=f"{flags} {count}={devices}".strip(), JAX_PLATFORMS="cpu",
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1",
             TOKENIZERS_PARALLELISM="false")
  return out


def train_command(workdir, synthetic_tiny, tok: str, *extra: str, command: str = "train",
                  config: str = "configs/synthetic.py:tiny") -> list[str]:
  return [sys.executable, "-m", "deft_jax.cli", command, "--config", config, "--workdir", str(workdir),
          f"--config.data.data_dir={data_root(synthetic_tiny)}", f"--config.data.tokenizer={tok}",
          *RUN_OVERRIDES, *extra]


def run(cmd, environ, timeout: float = 900) -> subprocess.CompletedProcess:
  # The timeout guards against a hang, it checks no speed: with the suite spread over every core
  # (pytest-xdist) a job shares them with another worker's tests.
  return subprocess.run(cmd, env=environ, capture_output=True, text=True, timeout=timeout,
                        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def check(result: subprocess.CompletedProcess, code: int = 0) -> None:
  assert result.returncode == code, f"exit {result.returncode}, expected {code}\n{result.stderr[-4000:]}"


def metrics(workdir) -> list[dict]:
  path = os.path.join(str(workdir), "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.endswith("\n")]


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def reference(tmp_path_factory, synthetic_tiny) -> list[dict]:
  """Metrics of the uninterrupted one-process job on 8 devices (run once per session)."""
  workdir = os.path.join(session_dir(tmp_path_factory, "runs"), "reference")
  if not os.path.exists(os.path.join(workdir, "results.json")):
    shutil.rmtree(workdir, ignore_errors=True)
    check(run(train_command(workdir, synthetic_tiny, tokenizer(tmp_path_factory)), env(tmp_path_factory)))
  logged = metrics(workdir)
  assert [m["step"] for m in logged] == list(range(1, STEPS + 1))
  return logged
