"""Speed benchmarks of the library, each run as `python -m benchmarks.<name>` from the
repository root (README.md has the commands and the measurements)."""
