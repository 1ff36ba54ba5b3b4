"""Benchmarks: real processes, measured; run with scripts/benchmark.py NAME."""
