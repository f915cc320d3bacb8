"""Service machinery: the app that builds, starts, supervises, reloads and stops the pipeline,
the reload planner, the /metrics exporter, systemd's notify protocol and the start-up backoff.
"""
