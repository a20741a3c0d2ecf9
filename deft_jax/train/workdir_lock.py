"""One training per workdir: an exclusive lock on WORKDIR/deft-jax.lock.

Two runs on one workdir overwrite each other's checkpoints and metrics.jsonl; the second one
is refused at the start with the holder's process id instead. fcntl locks are released by the
kernel when the holding process ends, however it ends, so a killed run leaves no stale lock.
On several hosts only process 0 locks (the workdir is shared by design there).
"""

import fcntl
import os
import socket
import time

LOCK_FILE = "deft-jax.lock"


class WorkdirLocked(RuntimeError):
  pass


class Lock:
  """A held lock; released by release(), when the Lock is dropped, or when the process ends."""

  def __init__(self, fd: int, path: str):
    self.fd, self.path = fd, path

  def release(self) -> None:
    if self.fd is not None:
      os.close(self.fd)  # closing the descriptor drops the fcntl lock
      self.fd = None

  __del__ = release


def acquire(workdir: str, lead: bool = True) -> Lock | None:
  """Locks `workdir` for this process (None where `lead` is False: not process 0)."""
  if not lead:
    return None
  path = os.path.join(workdir, LOCK_FILE)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    holder = os.pread(fd, 256, 0).decode(errors="replace").strip() or "another process"
    os.close(fd)
    raise WorkdirLocked(f"workdir {workdir} is in use by {holder} (lock {path}); "
                        "wait for it to end or use another --workdir") from None
  os.ftruncate(fd, 0)
  os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
            .encode(), 0)
  return Lock(fd, path)
