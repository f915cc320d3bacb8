"""Leaf helpers that the runtime and the offline tools (``training``, ``nn``) may both import.

Nothing here imports another ``edge_agent`` module: ``paths`` (the shared data folder and its
environment variable), ``ratelimit`` (a logger that says a repeated warning once a minute) and
``errors`` (an exception as one line for a log or a status message).
"""
