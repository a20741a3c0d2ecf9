"""Reading a JSON-lines log (metrics.jsonl) that a power loss may have cut mid-line.

Lines are appended and flushed one at a time, so only the last one can be torn: it is dropped
with a warning. A bad line before the last is damage of another kind and stops, named.
"""

import json
import sys


class LogError(ValueError):
  pass


def read(path: str) -> list[dict]:
  """The records of `path`, without a torn last line (warned about on stderr)."""
  with open(path) as f:
    lines = [(n, line) for n, line in enumerate(f, start=1) if line.strip()]
  records = []
  for i, (n, line) in enumerate(lines):
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError as e:
      if i < len(lines) - 1:
        raise LogError(f"{path} line {n}: not JSON ({e}); only a torn last line is dropped") from None
      print(f"warning: {path} line {n} is torn ({len(line.rstrip())} characters, {e}); dropped", file=sys.stderr)
  return records
