"""The synthetic-world study: does each method learn, and do the papers' orderings hold, on
the project's embedded world (vivi/input/synthetic.py)? README.md says how to run it."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # The repo.
HERE = os.path.dirname(os.path.abspath(__file__))
