"""The contract between an objective and the rest of the code: what it adds, reads and needs.

Every objective module ends with `OBJECTIVE = Objective(...)`. The train step, validation,
the input pipeline and the evaluators read these declarations and nothing else of the
module, so what a method needs (a target network, a memory, batch keys, a label space, a
second encoder pass) is said once, beside its loss, and no code outside the objective names
the method.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

# Batch keys that the labelled images of co-training give (config.labelled), not a sampler.
LABELLED_INPUTS = ('images', 'labels')


@dataclasses.dataclass(frozen=True)
class Objective:
  """One objective's declarations.

  defaults            its config keys (`weight` included) and their default values;
  make_head(cfg)      the parameters it adds on top of the encoder (an `nn.Module`);
  loss(outputs, batch, cfg)
                      a pure function -> (scalar loss, {metric: value}); `outputs` are its
                      head's, with the target network's under 'target' and its memory
                      under 'memory' when it has them;
  inputs              the batch keys it reads: the sampler (or, for LABELLED_INPUTS, the
                      labelled images of `config.labelled`) must give every one, and
  inputs_hint         says which config settings give them;
  target              whether it compares against the EMA target network
                      (`config.target_network` is set exactly when one objective does);
  target_encodes      batch keys the target network also encodes, into features of the
                      same name (Odin's discovery view);
  target_inputs_spec(cfg, config)
                      {key: (shape, dtype)} per example of the inputs of the online pass
                      that the target pass computes (returned under the target outputs'
                      'discovered'), for initialising the model;
  init_memory(cfg, rng), update_memory(memory, target_outputs, cfg)
                      a memory kept in the train state (VINCE's queue): both or neither;
  check_dataset(cfg, manifest, folder)
                      raises `errors.ConfigError` when the dataset's label space does not
                      fit the config (a classifier with fewer classes than labels);
  has_attention(cfg)  whether its head returns 'attention_masks' {scale: [N, ..., h, w]}
                      (VITO's attention pooling, drawn by the pictures evaluator).
  """
  defaults: Mapping[str, Any]
  make_head: Callable[..., Any]
  loss: Callable[..., tuple[Any, dict]]
  inputs: tuple[str, ...] = ('frames',)
  inputs_hint: str = ''
  target: bool = False
  target_encodes: tuple[str, ...] = ()
  target_inputs_spec: Callable[..., dict] | None = None
  init_memory: Callable[..., Any] | None = None
  update_memory: Callable[..., Any] | None = None
  check_dataset: Callable[..., None] | None = None
  has_attention: Callable[..., bool] | None = None

  def __post_init__(self):
    if (self.init_memory is None) != (self.update_memory is None):
      raise TypeError('an objective with a memory declares init_memory and update_memory')
    if 'weight' not in self.defaults:
      raise TypeError("an objective's defaults include its 'weight' in the total loss")
    if (self.target_encodes or self.target_inputs_spec) and not self.target:
      raise TypeError('only an objective with a target network has target passes')
