"""Sinks deliver alert events: ``open()``, ``send(event)`` (never blocks on I/O), ``close(timeout_s)``.

One module per sink (``log``, ``mqtt_alerts``), imported only when configured.
"""
