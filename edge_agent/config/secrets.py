"""The broker password: from ``mqtt.password_env`` or ``mqtt.password_file``, never from the config file."""

from __future__ import annotations

import os
from pathlib import Path

from edge_agent.config.sections import MqttSection
from edge_agent.config.table import ConfigError


def resolve_password(mqtt: MqttSection) -> str | None:
    """The broker password from ``password_env`` or ``password_file`` (stripped), else ``None``.

    Errors name the key, never the password.
    """
    if mqtt.password_env:
        value = os.environ.get(mqtt.password_env)
        if not value:
            raise ConfigError([f"mqtt.password_env: {mqtt.password_env!r} is not set or empty; export it"])
        return value
    if not mqtt.password_file:
        return None
    key = f"mqtt.password_file: {mqtt.password_file!r}"
    try:
        text = Path(mqtt.password_file).read_text(encoding="utf-8").strip()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigError([f"{key} cannot be read ({reason}); it must be a readable file"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{key} is not UTF-8 text; it must hold the password as text"]) from None
    if not text:
        raise ConfigError([f"{key} is empty; it must hold the password"])
    return text
