"""What the command-line entry points share: a user's error ends in one line, `error: ...`,
and exit status 2; every other exception keeps its traceback, because it is a bug.

`run(main)` (absl entry points: `main.py`, `evaluate.py`) is `absl.app.run` with two
differences a user sees:
  - flag parsing names a wrong `--config.<key>` override and lists the keys that exist at
    that level of the config (as an unknown key in a config file does), and a config file
    that is missing or fails to load reports its error in one line;
  - a `vivi.errors.UserError` raised anywhere in `main` (a bad config value, a missing
    path, an unusable dataset) ends the program with its message alone on stderr and exit
    status 2. Every other exception keeps its traceback: it is a bug.

`script(main)` (argparse entry points: `data/*.py`, `launch/local.py`) does the same for a
`main()` whose parser is an `ArgumentParser` of this module (its usage errors are one line
too). `writable_folder` is the check of an output folder they share.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys
from collections.abc import Callable

from absl import app, flags
from ml_collections import config_dict

from vivi import errors

EXIT_USER_ERROR = 2


def run(main: Callable[[list[str]], None]) -> None:
  app.run(functools.partial(_guarded, main), flags_parser=parse_flags)


def fail(message: str) -> None:
  """Prints `error: message` on stderr and exits with status 2."""
  print(f'error: {message}', file=sys.stderr, flush=True)
  sys.exit(EXIT_USER_ERROR)


def _guarded(main, argv):
  try:
    return main(argv)
  except (errors.UserError, app.UsageError) as e:
    fail(str(e))


def script(main: Callable[[], None]) -> None:
  """Runs an argparse entry point's `main()`, a UserError ending it in one line."""
  _guarded(lambda argv: main(), sys.argv)


class ArgumentParser(argparse.ArgumentParser):
  """argparse's parser whose usage errors are one `error: ...` line and exit status 2."""

  def error(self, message: str):
    fail(f'{message} ({self.prog} --help lists the arguments)')


def writable_folder(path: str, what: str) -> str:
  """`path` as a folder this process can write (created if missing), or a PathError that
  names `what` (the flag) and why."""
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise errors.PathError(f'{what}: cannot create {path} ({e.strerror})') from None
  if not os.access(path, os.W_OK | os.X_OK):
    raise errors.PathError(f'{what}: {path} is not writable')
  return path


def parse_flags(argv: list[str]) -> list[str]:
  missing = _missing_config_file(argv)
  if missing:
    fail(missing)
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(_flag_error(str(e)))
  except (AttributeError, KeyError) as e:  # ml_collections: an override of a missing key
    fail(unknown_override(argv) or f'{type(e).__name__}: {e}')


def _flag_error(message: str) -> str:
  """absl's message, without the traceback ml_collections embeds for a config file that
  raised a ValueError while loading (an unknown variant: its last line says it all). Any
  other exception in a config file is a bug and keeps its traceback."""
  lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
  if 'Traceback (most recent call last)' not in message or not lines[-1].startswith(
      'ValueError'):
    return message.strip()
  head = message.split('Error whilst parsing config file', 1)[0].strip().rstrip(':')
  return f'{head}: {lines[-1]}'


def unknown_override(argv: list[str], flag: str = 'config') -> str | None:
  """The message for the first `--config.a.b=v` whose key path is not in the config file
  named by `--config=...`: the path, and the keys that exist where it goes wrong."""
  path = _flag_value(argv, flag)
  if path is None:
    return None
  from ml_collections.config_flags import config_flags
  try:
    config = config_flags.ConfigFileFlagParser(flag).parse(path)
  except Exception:  # The file itself fails: absl reports that with its own message.
    return None
  pattern = re.compile(rf'^--?(?:no)?{flag}\.([^=]+)')
  for arg in argv[1:]:
    match = pattern.match(arg)
    if match:
      message = _missing_key(config, match.group(1), flag)
      if message:
        return f'{arg}: {message}'
  return None


def _missing_config_file(argv: list[str], flag: str = 'config') -> str | None:
  """The message for a `--config=FILE[:variant]` whose FILE does not exist."""
  value = _flag_value(argv, flag)
  if value is None:
    return None
  path = value.split(':', 1)[0]
  if os.path.isfile(path):
    return None
  folder = os.path.dirname(path) or '.'
  known = sorted(f for f in os.listdir(folder) if f.endswith('.py') and _defines_config(
      os.path.join(folder, f))) if os.path.isdir(folder) else []
  where = f'; {folder} has {", ".join(known)}' if known else ''
  return f'--{flag}={value}: no such config file {path}{where}'


def _defines_config(path: str) -> bool:
  with open(path) as f:
    return 'def get_config(' in f.read()


def _flag_value(argv: list[str], flag: str) -> str | None:
  for i, arg in enumerate(argv):
    if arg.startswith(f'--{flag}=') or arg.startswith(f'-{flag}='):
      return arg.split('=', 1)[1]
    if arg in (f'--{flag}', f'-{flag}') and i + 1 < len(argv):
      return argv[i + 1]
  return None


def _missing_key(config, dotted: str, flag: str) -> str | None:
  node, walked = config, flag
  for key in dotted.split('.'):
    if not isinstance(node, (config_dict.ConfigDict, dict)):
      return f'{walked} is a value ({node!r}), not a group of keys'
    if key not in node:
      valid = ', '.join(sorted(node.keys())) or '(none)'
      return f'unknown key {key!r}: {walked} has {valid}'
    node, walked = node[key], f'{walked}.{key}'
  return None
