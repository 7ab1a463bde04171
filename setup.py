"""The metadata lives in pyproject.toml; this shim exists for Apache Beam's Dataflow runner,
whose `--setup_file=./setup.py` packages the project for its workers (vivi/prep/)."""

import setuptools

setuptools.setup()
