"""Benchmarks at scale (outside the test suite): `python -m bench.run`, results in bench/RESULTS.md."""
