"""Helpers for the tests and the benchmarks: stored test models, topic readers, waits, records (the pipeline
itself runs through ``txmon.pipeline``)."""
