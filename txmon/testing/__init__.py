"""Helpers for the tests and the benchmarks: real worker processes, topic readers, waits, records."""
