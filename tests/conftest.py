import os
import shutil
import tempfile

# Tests run on the CPU with however many devices the test asks for in a subprocess; keep TF
# quiet and off any accelerator.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
# The tests run on the CPU; libtpu (the tpu extra) would otherwise probe for a TPU in every
# process. The TPU compile test asks libtpu for a topology itself (benchmarks/aot.py).
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

# One JAX persistent compilation cache for the whole pytest run, fresh each run: the
# end-to-end tests start the same programs in several processes (a run, its restart after a
# pre-emption, ...), and a cache hit costs seconds where compiling costs tens. The pytest
# process creates it before pytest-xdist starts its workers, which inherit the variable.
_CACHE_OWNER = 'JAX_COMPILATION_CACHE_DIR' not in os.environ
if _CACHE_OWNER:
  os.environ['JAX_COMPILATION_CACHE_DIR'] = tempfile.mkdtemp(prefix='vivi-tests-jax-cache-')


def pytest_unconfigure(config):
  if _CACHE_OWNER:
    shutil.rmtree(os.environ['JAX_COMPILATION_CACHE_DIR'], ignore_errors=True)


def pytest_collection_modifyitems(config, items):
  # Slow end-to-end tests first, with `--dist worksteal` (README's test command): both
  # workers start on them, and a worker that runs out steals queued tests from the other, so
  # the run does not end with one worker still working through long tests.
  items.sort(key=lambda item: item.get_closest_marker('slow') is None)
