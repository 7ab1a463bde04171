"""Random inputs with the pipeline's shapes, for tests and benchmarks (never for training)."""

from __future__ import annotations

import jax
import ml_collections
import numpy as np

from vivi import checkpoint, objectives, optim, parallel, train
from vivi.input import samplers


def random_batch(config: ml_collections.ConfigDict, batch_videos: int | None = None,
                 seed: int = 0) -> dict[str, np.ndarray]:
  """Random host inputs with the pipeline's shapes (tests, benchmarks): uint8 frames and
  images; boxes inside the frame, a label of the objective's classes each, three of four
  valid; soft labels that sum to 1; rotations in 0..3; segments in [-1, num_masks), every
  mask valid; Odin's views are its discovery view, the second one flipped."""
  rng = np.random.default_rng(seed)
  classes = lambda key: min([10] + [cfg.get('num_classes', 10) for cfg in
                                    objectives.reading(config, key).values()])
  out = {}
  for key, x in train.init_batch(config, batch_videos).items():
    if x.dtype == np.uint8:
      out[key] = rng.integers(0, 256, x.shape, dtype=np.uint8)
    elif key == 'boxes':
      # [y0, x0, y1, x1] with y0 <= y1 and x0 <= x1: corners sorted along their pair axis.
      corners = np.sort(rng.uniform(0, 1, x.shape[:-1] + (2, 2)), axis=-2)
      out[key] = corners.reshape(x.shape).astype(np.float32)
    elif key in ('box_labels', 'labels'):
      out[key] = rng.integers(0, classes(key), x.shape).astype(np.int32)
    elif key == 'box_valid':
      out[key] = rng.uniform(size=x.shape) < 0.75
    elif key == 'rotation':
      out[key] = rng.integers(0, 4, x.shape).astype(np.int32)
    elif key == 'soft_labels':
      logits = rng.normal(size=x.shape)
      out[key] = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype(np.float32)
    elif key == 'segments':
      out[key] = rng.integers(-1, samplers.resolve(config).num_masks, x.shape).astype(np.int32)
    elif key == 'mask_valid':
      out[key] = np.ones(x.shape, bool)
    elif key == 'cells':
      side = x.shape[-1]
      same = np.arange(side * side, dtype=np.int32).reshape(side, side)
      out[key] = np.broadcast_to(np.stack([same, same[:, ::-1]]), x.shape).copy()
    else:
      raise ValueError(f'no random input for batch[{key!r}] {x.shape} {x.dtype}')
  return out


def write_initial_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> None:
  """The train state at initialisation (seed 0), saved in `workdir` as training saves it."""
  model, tx = train.build_model(config), optim.make_optimizer(config)
  state = parallel.replicate(train.create_train_state(config, model, tx, jax.random.key(0)),
                             parallel.make_mesh())
  mngr = checkpoint.manager(workdir, config)
  checkpoint.save(mngr, state, config)
  mngr.wait_until_finished()
  mngr.close()
