"""Which sampler a config trains with (`config.input.sampler`), selected like the objectives.

    'vivi'    video -> shots -> frames (+ boxes, soft labels)   vivi_sampler.py
    'vince'   R2V2 frames, k anchors + k positives per video     vince_sampler.py
    'vito'    n views drawn marginally from a 2.56 s clip        vito_sampler.py
    'detcon'  two views of a frame + aligned FH segment masks    detcon_sampler.py
              (or Odin's discovery view, masks='discovered')
    'none'    no videos: labelled images only (configs/supervised.py, the supervised
              reference of the learning benchmark)

Each sampler module has
  DEFAULTS                                      its `config.input` keys beyond SHARED_KEYS,
                                                with the paper's values,
  POSITIVE                                      those of its keys that must be >= 1,
  example_spec(i, config)                       {key: (shape, dtype)} of one video's part
                                                of the batch (what the model is built on),
  from_config(i, config, manifest, folder)      the sampler for a dataset,
where `i` is `resolve(config)`: `config.input` checked (an unknown sampler or key is an error
listing the valid ones) and completed with the sampler's DEFAULTS. Adding a sampler is a new
module plus a line in REGISTRY.
"""

from __future__ import annotations

import importlib
import types

import ml_collections

from vivi import errors

# Keys every sampler reads; a config must set them.
SHARED_KEYS = ('sampler', 'batch_videos', 'image_size')
REGISTRY = {
    'vivi': 'vivi.input.vivi_sampler',
    'vince': 'vivi.input.vince_sampler',
    'vito': 'vivi.input.vito_sampler',
    'detcon': 'vivi.input.detcon_sampler',
    'none': __name__,       # This module: no videos (`_NoVideos` below).
}


class _NoVideos:
  """input.sampler='none': no video batch; `crop_area` is the labelled images' crop."""
  DEFAULTS = dict(crop_area=(0.08, 1.0))
  POSITIVE = ()
  __file__ = __file__

  @staticmethod
  def example_spec(i, config) -> dict:
    return {}

  @staticmethod
  def from_config(i, config, manifest, folder: str) -> None:
    return None


def get(name: str) -> types.ModuleType | type:
  """The sampler module of `name` (imported on first use: DetCon's pulls in scikit-image)."""
  if name not in REGISTRY:
    raise errors.ConfigError(f'config.input.sampler={name!r}; valid: {sorted(REGISTRY)} '
                             '(vivi/input/samplers.py)')
  if name == 'none':
    return _NoVideos
  return importlib.import_module(REGISTRY[name])


def resolve(config: ml_collections.ConfigDict) -> ml_collections.FrozenConfigDict:
  """`config.input` checked against its sampler's keys and completed with its DEFAULTS."""
  given = dict(config.input)
  name = given.get('sampler')
  module = get(name)
  valid = set(SHARED_KEYS) | set(module.DEFAULTS)
  unknown = sorted(set(given) - valid)
  if unknown:
    raise errors.ConfigError(f'config.input: unknown key(s) {unknown} for the {name!r} '
                             f'sampler; it takes {sorted(valid)} ({module.__file__})')
  missing = [k for k in SHARED_KEYS if k not in given]
  if missing:
    raise errors.ConfigError(f'config.input needs {missing} (every sampler reads them)')
  return ml_collections.FrozenConfigDict({**module.DEFAULTS, **given})


def example_spec(config: ml_collections.ConfigDict) -> dict[str, tuple[tuple, type]]:
  """{key: (shape, dtype)} of one video's part of the batch."""
  i = resolve(config)
  return get(i.sampler).example_spec(i, config)


def build(config: ml_collections.ConfigDict, manifest, folder: str):
  """The sampler of `config.input` for the dataset in `folder` (None for 'none')."""
  i = resolve(config)
  return get(i.sampler).from_config(i, config, manifest, folder)
