"""The two ways reading a user's corpus fails: the whole folder (ManualDirError) or one clip (Skip)."""

from deft_jax.data import build


class ManualDirError(build.DatasetError):
  """A manual_dir whose layout or annotation sheet cannot be read at all."""


class Skip(Exception):
  """This clip cannot be made; the message says why."""
