"""Which sampler a config trains with (`config.input.sampler`), selected like the objectives.

    'vivi'    video -> shots -> frames (+ boxes, soft labels)   vivi_sampler.py
    'vince'   R2V2 frames, k anchors + k positives per video     vince_sampler.py
    'vito'    n views drawn marginally from a 2.56 s clip        vito_sampler.py
    'detcon'  two views of a frame + aligned FH segment masks    detcon_sampler.py
              (or Odin's discovery view, masks='discovered')
    'none'    no videos: labelled images only (configs/supervised.py, the supervised
              reference of the learning benchmark)

Each sampler module ends with `SAMPLER = Sampler(...)`:
  defaults                                      its `config.input` keys beyond SHARED_KEYS,
                                                with the paper's values,
  positive                                      those of its keys that must be >= 1,
  example_spec(options, config)                 {key: (shape, dtype)} of one video's part
                                                of the batch (what the model is built on),
  from_config(options, config, manifest, folder)
                                                the sampler for a dataset,
where `options` is `resolve(config)`: `config.input` checked (an unknown sampler or key is an error
listing the valid ones) and completed with the sampler's defaults. Adding a sampler is a new
module plus a line in REGISTRY (vivi/registry.py; modules are imported on first use:
DetCon's pulls in scikit-image).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import ml_collections

from vivi import errors, registry

# Keys every sampler reads; a config must set them.
SHARED_KEYS = ('sampler', 'batch_videos', 'image_size')


@dataclasses.dataclass(frozen=True)
class Sampler:
  defaults: Mapping[str, Any]
  positive: tuple[str, ...]
  example_spec: Callable[..., dict]
  from_config: Callable[..., Any]


# input.sampler='none': no video batch; `crop_area` is the labelled images' crop.
NO_VIDEOS = Sampler(defaults=dict(crop_area=(0.08, 1.0)), positive=(),
                    example_spec=lambda options, config: {},
                    from_config=lambda options, config, manifest, folder: None)

REGISTRY: registry.Registry[Sampler] = registry.Registry('sampler', 'config.input.sampler', {
    'vivi': 'vivi.input.vivi_sampler:SAMPLER',
    'vince': 'vivi.input.vince_sampler:SAMPLER',
    'vito': 'vivi.input.vito_sampler:SAMPLER',
    'detcon': 'vivi.input.detcon_sampler:SAMPLER',
    'none': NO_VIDEOS,
})


def get(name: str) -> Sampler:
  return REGISTRY.get(name)


def resolve(config: ml_collections.ConfigDict) -> ml_collections.FrozenConfigDict:
  """`config.input` checked against its sampler's keys and completed with its defaults."""
  given = dict(config.input)
  missing = [k for k in SHARED_KEYS if k not in given]
  if missing:
    raise errors.ConfigError(f'config.input needs {missing} (every sampler reads them)')
  return REGISTRY.options(given['sampler'], given, 'config.input', shared=SHARED_KEYS)


def example_spec(config: ml_collections.ConfigDict) -> dict[str, tuple[tuple, type]]:
  """{key: (shape, dtype)} of one video's part of the batch."""
  options = resolve(config)
  return get(options.sampler).example_spec(options, config)


def build(config: ml_collections.ConfigDict, manifest, folder: str):
  """The sampler of `config.input` for the dataset in `folder` (None for 'none')."""
  options = resolve(config)
  return get(options.sampler).from_config(options, config, manifest, folder)
