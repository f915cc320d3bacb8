"""Sinks deliver alert events: ``open()``, ``send(event)`` (never blocks on I/O), ``close()`` (the app
passes no argument; ``log`` and ``mqtt`` take an optional ``timeout_s``).

One module per sink (``log``, ``mqtt_alerts``: the ``mqtt`` sink, ``homeassistant``), imported only
when configured; ``alert_schema`` holds the alert and sensor-state documents the MQTT sinks publish.
"""
