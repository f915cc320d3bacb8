"""Sound-card input devices through PortAudio (``sounddevice``), imported only when needed.

``sounddevice`` is an optional dependency (``pip install 'edge-agent[audio]'``) and needs the
system library PortAudio (``apt-get install libportaudio2``). Nothing here imports it at module
import time, so a gateway without either still runs the MQTT and replay paths.

PortAudio lists devices once, when it is initialised (at ``import sounddevice``): a device that
appears later (a USB interface plugged in, a PulseAudio server started after the agent) is found
only after a re-initialisation. :func:`reinitialise` does that, but only while this process
has no stream open (``Pa_Terminate`` would close them under their owners).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any

INSTALL_HINT = (
    "install it with: pip install 'edge-agent[audio]' (and the system library: apt-get install libportaudio2)"
)


class AudioUnavailableError(RuntimeError):
    """``sounddevice`` or the PortAudio library is missing; the message names what to install."""


class DeviceNotFoundError(LookupError):
    """No input device matches the configured name or index (the message lists the devices)."""


@dataclass(frozen=True)
class InputDevice:
    index: int
    name: str
    channels: int  # most input channels
    default_rate_hz: float
    host_api: str
    is_default: bool = False

    def describe(self) -> str:
        return f"input device {self.index} {self.name!r} ({self.host_api})"


def import_sounddevice() -> ModuleType:
    """``import sounddevice``, or :class:`AudioUnavailableError` saying what to install."""
    try:
        import sounddevice
    except ImportError as error:  # the Python package is missing
        raise AudioUnavailableError(f"the Python package sounddevice is not installed; {INSTALL_HINT}") from error
    except OSError as error:  # sounddevice raises OSError when libportaudio is missing
        raise AudioUnavailableError(f"the PortAudio library cannot be loaded ({error}); {INSTALL_HINT}") from error
    return sounddevice


class _PortAudioState:
    """Serialises PortAudio (re)initialisation and stream opening across sources; counts open streams."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open_streams = 0  # streams of this process that are open (not yet closed)


PORTAUDIO = _PortAudioState()


def reinitialise(sd: ModuleType) -> bool:
    """Re-initialise PortAudio so that devices which appeared since the import are listed.

    The caller holds ``PORTAUDIO.lock``. Skipped (False) while any stream of this process is
    open. Uses sounddevice's ``_terminate``/``_initialize``: the library has no public call for it.
    """
    if PORTAUDIO.open_streams:
        return False
    if getattr(sd, "_initialized", 0):
        sd._terminate()
    sd._initialize()
    return True


def list_input_devices(sd: ModuleType) -> list[InputDevice]:
    """Every device with at least one input channel, as PortAudio lists it now."""
    try:
        default_input = int(sd.default.device[0])
    except (TypeError, ValueError, IndexError):  # no default set: -1 or None
        default_input = -1
    apis = [str(api["name"]) for api in sd.query_hostapis()]
    return [_device(info, apis, default_input) for info in sd.query_devices() if int(info["max_input_channels"]) > 0]


def _device(info: dict[str, Any], apis: list[str], default_input: int) -> InputDevice:
    index = int(info["index"])
    api = int(info["hostapi"])
    return InputDevice(
        index=index,
        name=str(info["name"]),
        channels=int(info["max_input_channels"]),
        default_rate_hz=float(info["default_samplerate"]),
        host_api=apis[api] if 0 <= api < len(apis) else str(api),
        is_default=index == default_input,
    )


def resolve_input_device(devices: list[InputDevice], spec: str, channels: int) -> InputDevice:
    """The device ``spec`` names: ``""`` the default input, digits an index, else a name.

    A name matches exactly (case-insensitive) or, failing that, as a substring of exactly one
    device's name. The device must offer ``channels`` input channels. Errors list the devices.
    """
    spec = spec.strip()
    if not spec:
        found = [d for d in devices if d.is_default]
        what = "default input device"
    elif spec.isdigit():
        found = [d for d in devices if d.index == int(spec)]
        what = f"input device with index {spec}"
    else:
        wanted = spec.casefold()
        found = [d for d in devices if d.name.casefold() == wanted] or [
            d for d in devices if wanted in d.name.casefold()
        ]
        what = f"input device whose name contains {spec!r}"
    if not found:
        raise DeviceNotFoundError(f"no {what}; {describe_devices(devices)}")
    if len(found) > 1:
        names = ", ".join(f"{d.index} {d.name!r}" for d in found)
        raise DeviceNotFoundError(
            f"{len(found)} input devices match {spec!r} ({names}); use a longer name or the index"
        )
    device = found[0]
    if device.channels < channels:
        raise DeviceNotFoundError(
            f"input device {device.index} {device.name!r} has {device.channels} input channel(s), "
            f"the source needs {channels}"
        )
    return device


def describe_devices(devices: list[InputDevice]) -> str:
    if not devices:
        return "PortAudio lists no input device (see `edge-agent devices`)"
    return "input devices: " + ", ".join(f"{d.index} {d.name!r}" for d in devices)


def format_device_table(devices: list[InputDevice]) -> str:
    """The table ``edge-agent devices`` prints: index, channels, default rate, host API, name."""
    lines = [f"{'':1} {'index':>5}  {'channels':>8}  {'default rate':>12}  {'host API':<10}  name"]
    for d in devices:
        mark = "*" if d.is_default else " "
        rate = f"{d.default_rate_hz:.0f} Hz"
        lines.append(f"{mark} {d.index:>5}  {d.channels:>8}  {rate:>12}  {d.host_api:<10}  {d.name}")
    return "\n".join(lines)


def expected_error(error: BaseException) -> bool:
    """Errors a capture retry loop expects (missing library or device, PortAudio refusing): logged without traceback."""
    return isinstance(error, AudioUnavailableError | DeviceNotFoundError | OSError | ValueError) or (
        type(error).__name__ == "PortAudioError"
    )
