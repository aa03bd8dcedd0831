"""Benchmarks of issue 8: training and evaluation throughput, search efficiency, padding. See README.md."""
