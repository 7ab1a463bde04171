"""Self-supervised objectives, selected by name in `config.objectives`.

Each objective is a module that ends with `OBJECTIVE = objective.Objective(...)`: its
defaults (weight included), its head, its pure loss, and what it needs (batch inputs, a
target network, a memory, a check of the dataset's label space; objective.py). The train
step sums `cfg.weight * loss` over the objectives that the config names. Adding an
objective is a new file plus a line in REGISTRY, never an edit of the step.
"""

from __future__ import annotations

import ml_collections

from vivi import errors, registry
from vivi.objectives import (
  detcon,
  distillation,
  exemplar,
  object_classification,
  object_triplet,
  objective,
  odin,
  rotation,
  shot_infonce,
  shot_order,
  supervised,
  vince,
  vito,
)

REGISTRY: registry.Registry[objective.Objective] = registry.Registry(
    'objective', 'config.objectives', {
        'exemplar': exemplar.OBJECTIVE,              # VIVI frame/shot level
        'rotation': rotation.OBJECTIVE,              # VIVI frame level
        'shot_infonce': shot_infonce.OBJECTIVE,      # VIVI video level
        'shot_order': shot_order.OBJECTIVE,          # VIVI video level
        'object_triplet': object_triplet.OBJECTIVE,  # object level (Romijnders et al.)
        'object_classification': object_classification.OBJECTIVE,  # its ablation
        'distillation': distillation.OBJECTIVE,      # ablation (Romijnders et al.)
        'supervised': supervised.OBJECTIVE,          # co-training (VIVI; Romijnders et al.)
        'vince': vince.OBJECTIVE,                    # Multi-Pair NCE + MoCo queue (VINCE)
        'vito': vito.OBJECTIVE,                      # attention pooling + InfoNCE (VITO)
        'detcon': detcon.OBJECTIVE,                  # contrastive detection (DetCon_B)
        'odin': odin.OBJECTIVE,                      # DetCon on discovered segments (Odin)
    })


def get(name: str) -> objective.Objective:
  return REGISTRY.get(name)


def resolve(objectives: ml_collections.ConfigDict) -> dict[str, ml_collections.ConfigDict]:
  """Validates `config.objectives` and fills each objective's defaults.

  Raises `ConfigError` naming an unknown objective or an unknown key of a known one.
  """
  if not objectives:
    raise errors.ConfigError('config.objectives is empty: name at least one objective')
  return {name: REGISTRY.options(name, cfg, f'config.objectives.{name}')
          for name, cfg in objectives.items()}


def reading(config: ml_collections.ConfigDict, key: str) -> dict[str, ml_collections.ConfigDict]:
  """{name: options} of the configured objectives that read batch `key`."""
  return {name: cfg for name, cfg in resolve(config.objectives).items()
          if key in get(name).inputs}
