"""edge-agent: condition monitoring of vibration and sound on industrial gateways.

Layout: ``sources/`` -> ``pipeline/`` -> ``sinks/``, run by ``service/``; beside them the
configuration (``config``, ``configload``), ``metrics``, ``modelmeta``, ``modelfile``, ``mqttclient``,
``types`` and ``cli``; ``common/`` holds helpers both sides may import. ``nn/`` and ``training/``
are offline only: the running agent never imports them.
"""

__version__ = "0.1.0"
