"""Benchmarks, run by hand (never by ``make test``); results in docs/benchmarks.md."""
