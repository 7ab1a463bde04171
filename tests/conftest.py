import os
import sys

# Tests run on the CPU with however many devices the test asks for in a subprocess; keep TF
# quiet and off any accelerator.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def pytest_collection_modifyitems(config, items):
  # Slow end-to-end tests first: pytest-xdist hands them out at the start, and the many fast
  # tests then fill the other worker, instead of two long tests ending the run on one.
  items.sort(key=lambda item: item.get_closest_marker('slow') is None)
