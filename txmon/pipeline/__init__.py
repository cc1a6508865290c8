"""The one pipeline runner: embedded or configured stack, topics, worker processes, send, wait, collect."""
