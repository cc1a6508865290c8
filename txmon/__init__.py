"""txmon: streaming transaction monitor for Bitcoin anti-money-laundering.

Shared pieces live here (settings, wire contracts, the command line); each concern has its
own top-level package: ``replay`` (data sets, generator, replays), ``producer``, ``stream_app``
and ``model_store``.
"""

__version__ = "0.1.0"
