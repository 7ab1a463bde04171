"""The device mesh and the shardings of the train step.

One `Mesh` over every device of every process with a single 'data' axis. The global batch is
sharded over it along its leading (video) dimension; the train state is replicated. Under
`jax.jit` with these shardings, any reduction over the batch (BatchNorm statistics, the
triplet and contrastive comparisons) is over the *global* batch: XLA inserts the
collectives. The same code runs on 1 CPU, 8 forced CPU devices, or a pod.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from vivi import errors

DATA = 'data'


def initialize() -> None:
  """Joins a multi-process job, before anything touches a device.

  Several processes (hosts, or local processes each with its own CPU devices) form one JAX
  job when `jax.distributed.initialize` runs in each:
    * explicitly: JAX_COORDINATOR_ADDRESS (host:port of process 0), JAX_NUM_PROCESSES and
      JAX_PROCESS_ID in the environment, as `launch/local.py` and `launch/slurm.sbatch` set
      them; on CPU the collectives then go over gloo (TCP);
    * auto-detected: VIVI_DISTRIBUTED=auto (the TPU pod launcher sets it), where JAX finds
      the coordinator itself (TPU VM pods; SLURM; see jax.distributed.initialize).
  Without either, a single process uses its local devices.
  """
  address = os.environ.get('JAX_COORDINATOR_ADDRESS')
  if address:
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')  # CPU devices only.
    jax.distributed.initialize(coordinator_address=address,
                               num_processes=int(os.environ['JAX_NUM_PROCESSES']),
                               process_id=int(os.environ['JAX_PROCESS_ID']))
  elif os.environ.get('VIVI_DISTRIBUTED') == 'auto':
    jax.distributed.initialize()


def make_mesh(devices=None) -> Mesh:
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (DATA,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA))


def state_shardings(tree: Any, mesh: Mesh, fsdp: bool = False,
                    min_size: int = 2 ** 16) -> Any:
  """The train state's shardings: replicated, or with `fsdp` (for wide models whose
  parameters and optimiser state crowd a device's memory) every leaf of at least
  `min_size` elements split over the 'data' axis along its largest dimension that the
  number of devices divides (leaves it does not divide stay replicated). Under `jax.jit`
  XLA then all-gathers parameters where the step needs them whole and reduce-scatters
  their gradients: the same arithmetic as replicated, each device storing 1/N.
  """
  n = mesh.devices.size

  def one(x):
    if fsdp and n > 1 and x.size >= min_size:
      for axis in sorted(range(x.ndim), key=lambda a: -x.shape[a]):
        if x.shape[axis] % n == 0:
          return NamedSharding(mesh, P(*[DATA if a == axis else None for a in range(x.ndim)]))
    return replicated(mesh)

  return jax.tree.map(one, tree)


def check_batch_size(global_batch: int, mesh: Mesh, what: str = 'input.batch_videos') -> None:
  n = mesh.devices.size
  if global_batch % n or global_batch % jax.process_count():
    raise errors.ConfigError(f'{what}={global_batch} must be divisible by the {n} devices and '
                             f'{jax.process_count()} processes of the mesh')


def global_batch(local: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Assembles the global batch from each process's slice (leading dim = this host's part)."""
  sharding = batch_sharded(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), local)


def replicate(tree: Any, mesh: Mesh) -> Any:
  return jax.device_put(tree, replicated(mesh))
