"""This process as the dashboard and the other nodes of a cluster list it.

Every rtserver node answers the cluster's ``node`` command with
:func:`describe`, so one node's dashboard can list them all; what comes back
is another process's word, so :func:`peer` keeps only plain fields of the
expected types.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from .metrics import Stats
from .version import __version__

_HOSTNAME = socket.gethostname()
#: The fields of a description, and the types a peer's must have.
_FIELDS: dict[str, tuple[type, ...]] = {
    "id": (str,),
    "hostname": (str,),
    "pid": (int,),
    "version": (str,),
    "started": (int, float),
    "uptime": (int, float),
    "connections": (int,),
}


def describe(node_id: str, stats: Stats) -> dict[str, Any]:
    """``{id, hostname, pid, version, started, uptime, connections}`` of this process."""
    connections = stats.gauges().get("connections", {})
    return {
        "id": node_id,
        "hostname": _HOSTNAME,
        "pid": os.getpid(),
        "version": __version__,
        "started": round(stats.started, 3),
        "uptime": round(time.time() - stats.started, 1),
        "connections": sum(connections.values()),
    }


def peer(answer: Any) -> dict[str, Any] | None:
    """Another node's description from its answer; None when it has no id."""
    described = answer.get("node") if isinstance(answer, dict) else None
    if not isinstance(described, dict) or not isinstance(described.get("id"), str):
        return None
    return {
        key: value
        for key, kinds in _FIELDS.items()
        if isinstance(value := described.get(key), kinds) and not isinstance(value, bool)
    }
