"""absl's log without the libraries' chatter."""

from __future__ import annotations

import logging as py_logging

from absl import logging


class _OnlyWarningsFromLibraries(py_logging.Filter):
  """Keeps the log readable: orbax and TensorFlow narrate every save and trace at INFO."""
  NOISY = ('/orbax/', '/tensorflow/', '/jax/_src/')

  def filter(self, record):
    return record.levelno >= py_logging.WARNING or not any(
        part in record.pathname for part in self.NOISY)


def quiet_library_logs() -> None:
  """Drops the libraries' INFO lines from absl's log (warnings and errors stay)."""
  logging.get_absl_handler().addFilter(_OnlyWarningsFromLibraries())
