"""The bottom layer every package may import: wire contracts and their vocabularies, settings, errors,
the Elliptic format, graph primitives and fits. It imports nothing of txmon's above it."""
