"""Errors that are the user's to fix, not bugs.

Every command-line entry point (`main.py`, `evaluate.py`, `data/*.py`, `launch/local.py`,
through `vivi/cli.py`) prints a `UserError`'s message alone and exits with status 2; any
other exception keeps its traceback, because it is a bug. Raise one where the message says
what to change: the config key, the path, the record.
"""


class UserError(Exception):
  """Something the user gave is wrong or missing (config, path, dataset)."""


class ConfigError(UserError, ValueError):
  """A config value that cannot work; the message names the key and the valid values."""


class DatasetError(UserError, ValueError):
  """A dataset that is missing, unreadable, or has nothing the configured sampler can use."""


class PathError(UserError, OSError):
  """A workdir, encoder or output folder that is missing, not a folder, or not writable."""


class MissingPathError(PathError, FileNotFoundError):
  """A folder or file that does not exist, or does not hold what it must (no checkpoint at
  that step, no encoder.json, no videos)."""


class NotPreparedError(UserError, FileNotFoundError):
  """A TFDS data set that is not prepared in the data dir; nothing is ever downloaded."""
