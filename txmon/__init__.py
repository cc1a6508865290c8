"""txmon: streaming transaction monitor for Bitcoin anti-money-laundering.

Layers, each importing only downward (docs/architecture.md): ``txmon.cli`` (the command) and
``txmon.testing`` → ``txmon.pipeline`` (the one runner) → ``txmon.embedded`` (local broker and
redis-server) and ``replay.report`` → ``stream_app`` (the worker), ``producer``, ``replay.analysis`` →
``model_store`` → ``replay.data`` and ``replay.synth`` → ``txmon.core`` (contracts, settings, errors,
graph primitives and fits).
"""

__version__ = "0.1.0"
