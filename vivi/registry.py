"""One registry for every plug-in a config names: objectives, samplers, evaluators, optimisers,
learning-rate and target-momentum schedules.

A plug-in is an object with `defaults`, a mapping of each config key it takes to its default
value. A registry maps the names a config may give to plug-ins (or to 'module:attribute'
strings, imported on first use, for plug-ins that pull in heavy libraries), and resolves
one config entry into the plug-in's options: its defaults completed by what the config sets.
An unknown name and an unknown key are both a `ConfigError` that names where they were found
and lists what is valid, so a key misspelt in a config file stops the run before anything
is built instead of being silently ignored.

  OPTIMIZERS = registry.Registry('optimiser', 'config.optimizer.name', {'sgd': SGD, ...})
  plugin, options = OPTIMIZERS.resolve(config.optimizer, 'config.optimizer', name_key='name')
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from typing import Any, Generic, Protocol, TypeVar

import ml_collections

from vivi import errors


class Plugin(Protocol):
  defaults: Mapping[str, Any]


T = TypeVar('T', bound=Plugin)


@dataclasses.dataclass
class Registry(Generic[T]):
  """Plug-ins of one kind by name.

  `kind` names them in messages ('objective'); `where` is the config key whose value is a
  name ('config.input.sampler'); `entries` maps each name to its plug-in or to a
  'module:attribute' string.
  """
  kind: str
  where: str
  entries: dict[str, T | str]

  def names(self) -> list[str]:
    return list(self.entries)

  def __contains__(self, name: str) -> bool:
    return name in self.entries

  def get(self, name: str) -> T:
    """The plug-in registered as `name` (imported on first use)."""
    if name not in self.entries:
      raise errors.ConfigError(f'{self.where}: unknown {self.kind} {name!r}; valid: '
                               f'{sorted(self.entries)}')
    entry = self.entries[name]
    if isinstance(entry, str):
      module, attribute = entry.split(':')
      entry = self.entries[name] = getattr(importlib.import_module(module), attribute)
    return entry

  def options(self, name: str, given: Mapping[str, Any], where: str,
              shared: tuple[str, ...] = ()) -> ml_collections.FrozenConfigDict:
    """`given` (the config entry at `where`) checked against the keys of `name`'s plug-in
    and completed with its defaults; `shared` keys are valid for every plug-in of the kind
    (the name's own key, keys the caller reads)."""
    defaults = self.get(name).defaults
    given = dict(given)
    unknown = sorted(set(given) - set(defaults) - set(shared))
    if unknown:
      raise errors.ConfigError(f'{where}: unknown key(s) {unknown} for the {name!r} '
                               f'{self.kind}; it takes {sorted(set(defaults) | set(shared))}')
    return ml_collections.FrozenConfigDict({**defaults, **given})

  def resolve(self, entry: Mapping[str, Any], where: str, name_key: str = 'name',
              shared: tuple[str, ...] = ()) -> tuple[T, ml_collections.FrozenConfigDict]:
    """(plug-in, options) of a config entry that names its plug-in under `name_key`
    (`config.optimizer = dict(name='sgd', momentum=0.9)`)."""
    if name_key not in entry:
      raise errors.ConfigError(f'{where}.{name_key} is not set; valid: '
                               f'{sorted(self.entries)}')
    name = entry[name_key]
    return self.get(name), self.options(name, entry, where, shared=(name_key, *shared))
