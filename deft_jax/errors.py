"""Errors that several layers raise for one kind of bad input (the CLI prints them as one line)."""


class CheckpointError(ValueError):
  """A checkpoint that cannot be used: a model checkpoint that does not match or cannot be read,
  a workdir with no checkpoint that restores. The message names the file or folder."""
