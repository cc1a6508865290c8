"""Helpers for the tests and the benchmarks: stored test models, topic readers, waits, records, processes left
running (the pipeline itself runs through ``txmon.pipeline``)."""
