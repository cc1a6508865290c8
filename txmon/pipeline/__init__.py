"""The one pipeline runner: embedded or configured stack, topics, worker processes, send, wait, collect.

- ``runner``: ``Pipeline``, the steps of a run in one place (stack, topics, workers, send, wait, collect, stop);
- ``worker``: ``WorkerProcess`` (``python -m txmon worker`` in its own session) and ``worker_env``;
- ``completion``: when a replay is done (the Redis replay_end set) and what it published;
- ``follow``: the live follower of a replay's alerts and statistics (``txmon demo``'s view).
"""
