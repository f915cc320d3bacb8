"""Sources turn the outside world into :class:`edge_agent.types.Chunk` s.

A source is a small class with ``start(emit)`` (non-blocking) and ``stop()`` (idempotent); one
module per source type (``mqtt``, ``replay``, ``soundcard``), imported only when a configured source
needs it, so a machine without an optional library can still run the others. Beside them: the MQTT
payload parser (``payloads``), PortAudio's device list (``devices``, also ``edge-agent devices``)
and the audio level and silence detector (``audio_health``).
"""
