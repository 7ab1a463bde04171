"""Random inputs with the pipeline's shapes, for tests and benchmarks (never for training)."""

from __future__ import annotations

import jax
import ml_collections
import numpy as np

from vivi import checkpoint, optim, parallel, train
from vivi.input import samplers


def random_batch(config: ml_collections.ConfigDict, batch_videos: int | None = None,
                 seed: int = 0) -> dict[str, np.ndarray]:
  """Random host inputs with the pipeline's shapes (tests, benchmarks): uint8 frames,
  segments in [-1, num_masks), every mask valid; Odin's views are its discovery view,
  the second one flipped."""
  rng = np.random.default_rng(seed)
  out = {}
  for key, x in train.init_batch(config, batch_videos).items():
    if x.dtype == np.uint8:
      out[key] = rng.integers(0, 256, x.shape, dtype=np.uint8)
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
