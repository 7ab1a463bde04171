"""Which folder of video records a config trains on (`config.data.dataset`)."""

from __future__ import annotations

import os

import jax
import ml_collections
from jax.experimental import multihost_utils

from vivi.input import records


def resolve(data: ml_collections.ConfigDict) -> str:
  """Returns the dataset folder, building the synthetic world on first use.

  `data.dataset` is 'synthetic' (the embedded default: built under `data.cache_dir` from
  `data.synthetic` by process 0 while the others wait) or a folder written by `data/`.
  """
  if data.dataset == 'synthetic':
    from vivi.input import synthetic  # Imported only when used: rendering code.
    cache = os.path.expanduser(data.cache_dir)
    if jax.process_index() == 0:
      synthetic.ensure_dataset(cache, **data.synthetic, num_workers=os.cpu_count() or 1)
    multihost_utils.sync_global_devices('synthetic dataset built')
    folder = synthetic.dataset_folder(cache, **data.synthetic)
  elif not data.dataset:
    raise ValueError("config.data.dataset is empty: set it to a folder of video records "
                     "(made by data/) or to 'synthetic'")
  else:
    folder = os.path.expanduser(data.dataset)
  records.Manifest.read(folder)  # Fails clearly if the folder is not a dataset.
  return folder
