"""Self-supervised objectives, selected by name in `config.objectives`.

Each objective is a module with
  DEFAULTS                     its config keys and their default values (weight included),
  make_head(cfg) -> nn.Module  the parameters it adds on top of the encoder (may be none),
  loss(outputs, batch, cfg)    a pure function -> (scalar loss, dict of metrics),
and the train step sums `cfg.weight * loss` over the objectives that the config names.
Objectives that compare against the EMA target network set `TARGET = True`: their `loss`
finds the target's head outputs under outputs['target']. One with a memory (VINCE's queue)
also has `init_memory(cfg, rng)` and `update_memory(memory, target_outputs, cfg)`; the
memory lives in the train state and reaches `loss` as outputs['memory']. One whose target
pass computes inputs of the online pass (Odin's discovered segments) returns them as the
target's outputs['discovered'] and declares their shapes in `target_inputs_spec(cfg, config)`.
Adding an objective is a new file plus a line in REGISTRY, never an edit of the step.
"""

from __future__ import annotations

import types

import ml_collections

from vivi import errors
from vivi.objectives import (
  detcon,
  distillation,
  exemplar,
  object_classification,
  object_triplet,
  odin,
  rotation,
  shot_infonce,
  shot_order,
  supervised,
  vince,
  vito,
)

REGISTRY: dict[str, types.ModuleType] = {
    'exemplar': exemplar,                            # VIVI frame/shot level
    'rotation': rotation,                            # VIVI frame level
    'shot_infonce': shot_infonce,                    # VIVI video level
    'shot_order': shot_order,                        # VIVI video level
    'object_triplet': object_triplet,                # object level (Romijnders et al.)
    'object_classification': object_classification,  # ablation (Romijnders et al.)
    'distillation': distillation,                    # ablation (Romijnders et al.)
    'supervised': supervised,                        # co-training (VIVI; Romijnders et al.)
    'vince': vince,                                  # Multi-Pair NCE + MoCo queue (VINCE)
    'vito': vito,                                    # attention pooling + InfoNCE (VITO)
    'detcon': detcon,                                # contrastive detection (DetCon_B)
    'odin': odin,                                    # DetCon on discovered segments (Odin)
}


def get(name: str) -> types.ModuleType:
  if name not in REGISTRY:
    raise errors.ConfigError(f'unknown objective {name!r} in config.objectives; '
                             f'known: {sorted(REGISTRY)}')
  return REGISTRY[name]


def resolve(objectives: ml_collections.ConfigDict) -> dict[str, ml_collections.ConfigDict]:
  """Validates `config.objectives` and fills each objective's defaults.

  Raises ValueError naming an unknown objective or an unknown key of a known one.
  """
  if not objectives:
    raise errors.ConfigError('config.objectives is empty: name at least one objective')
  out = {}
  for name, cfg in objectives.items():
    module = get(name)
    cfg = dict(cfg)
    unknown = sorted(set(cfg) - set(module.DEFAULTS))
    if unknown:
      raise errors.ConfigError(f'config.objectives.{name}: unknown key(s) {unknown}; '
                               f'{name} takes {sorted(module.DEFAULTS)} ({module.__file__})')
    out[name] = ml_collections.FrozenConfigDict({**module.DEFAULTS, **cfg})
  return out
