"""Modules imported on first use, so that what only declares shapes and defaults imports
without them.

The model, the objectives and the train step need no TensorFlow: a GPU or TPU image without
it runs them (fed by `vivi.testing.random_batch`). The samplers' modules declare a run's
batch (`example_spec`, read when the model is built) beside the tf.data code that fills it;
with `from vivi.lazy_import import tensorflow as tf` they import without TensorFlow, which
is imported at the first `tf.<name>` a pipeline evaluates.
"""

from __future__ import annotations

import importlib
import types
from typing import Any


class LazyModule:
  """Stands for the module `name` and imports it on the first attribute read."""

  def __init__(self, name: str):
    self._name = name
    self._module: types.ModuleType | None = None

  def __getattr__(self, attribute: str) -> Any:
    if self._module is None:
      self._module = importlib.import_module(self._name)
    return getattr(self._module, attribute)

  def __repr__(self) -> str:
    return f'<lazily imported module {self._name!r}>'


tensorflow = LazyModule('tensorflow')
tensorflow_datasets = LazyModule('tensorflow_datasets')
