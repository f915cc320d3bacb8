"""What each dataset's labels mean to a maintenance planner: ``label_info`` of the exported meta.

One table per dataset (label -> description, severity; :data:`edge_agent.modelmeta_parts.SEVERITIES`).
Severities are this project's recommendation, from what the data can tell: CWRU's seeded bearing
defects are ``warning`` at 0.007 and 0.014 in and ``critical`` at 0.021 in (the largest; the
spall is more than half a millimetre wide); the motor-sound model cannot size a fault, so both of
its faults are ``warning``. The healthy class is ``none``.

:func:`rewrite_label_info` puts a table into an exported file without retraining: it rewrites only
``meta.json`` (``torch.jit.load`` and ``torch.jit.save`` keep the graph and the weights) and refuses
to replace the file unless the rewritten model's outputs are bit-identical on the given windows.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from edge_agent.modelmeta import META_FILE, validate_meta

MM_PER_IN = 25.4
_RACES = {"IR": "inner-race fault", "B": "ball (rolling-element) fault", "OR": "outer-race fault at 6 o'clock"}
_SEVERITY_BY_SIZE = {"007": "warning", "014": "warning", "021": "critical"}


def _cwru_table() -> dict[str, dict[str, str]]:
    table = {"Normal": {"description": "no bearing fault (normal baseline)", "severity": "none"}}
    for size, severity in _SEVERITY_BY_SIZE.items():
        inches = int(size) / 1000
        for race, what in _RACES.items():
            label = f"{race}{size}" + ("@6" if race == "OR" else "")
            description = f"{what}, {inches * MM_PER_IN:.2f} mm ({inches:.3f} in)"
            table[label] = {"description": description, "severity": severity}
    return table


CWRU_LABEL_INFO: dict[str, dict[str, str]] = _cwru_table()  # IR007 -> inner-race fault, 0.18 mm (0.007 in)
AUDIO_LABEL_INFO: dict[str, dict[str, str]] = {
    "healthy": {"description": "healthy motor (no fault heard)", "severity": "none"},
    "propeller": {"description": "propeller fault (damaged propeller heard)", "severity": "warning"},
    "bearing": {"description": "motor bearing fault", "severity": "warning"},
}


def label_info(labels: Sequence[str], table: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, str]]:
    """The ``label_info`` meta entry for ``labels``: the table's rows for those it knows, in label order."""
    return {label: dict(table[label]) for label in labels if label in table}


def rewrite_label_info(path: Path, table: Mapping[str, Mapping[str, str]], windows: torch.Tensor) -> dict[str, Any]:
    """Put ``table``'s ``label_info`` into the model file ``path`` in place; the new meta.

    ``windows`` ``(N, channels, window_samples)``: the outputs before and after must be bit-identical
    (``RuntimeError`` otherwise, and the file is left as it was).
    """
    extra = {META_FILE: ""}
    engine = json.loads(_meta_text(path)).get("quantized_engine")
    if engine:  # decides how int8 weights are packed: set it before loading
        torch.backends.quantized.engine = engine
    module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    meta = json.loads(extra[META_FILE])
    meta["label_info"] = label_info(meta["labels"], table)
    validate_meta(meta, source=str(path))
    partial = path.with_name(path.name + ".partial")
    with torch.inference_mode():
        before = module(windows)
        torch.jit.save(module, str(partial), _extra_files={META_FILE: json.dumps(meta, indent=2)})
        after = torch.jit.load(str(partial), map_location="cpu")(windows)
    if not torch.equal(before, after):
        partial.unlink()
        raise RuntimeError(f"{path}: outputs changed after rewriting {META_FILE}; file left as it was")
    os.replace(partial, path)
    return meta


def _meta_text(path: Path) -> str:
    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if n.endswith(f"/extra/{META_FILE}"))
        return archive.read(name).decode()
