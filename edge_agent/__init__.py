"""edge-agent: condition monitoring of vibration and sound on industrial gateways."""

__version__ = "0.1.0"
