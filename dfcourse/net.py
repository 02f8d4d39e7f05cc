"""Is the network there? One quick check, so that nothing waits on a network that is not.

:func:`network_available` tries one TCP connection; :func:`setup_offline` sets
``HF_HUB_OFFLINE=1`` when the hub cannot be reached. Kept apart from the notebook harness
(:mod:`dfcourse.course`) so that building a model (:mod:`dfcourse.models`) does not load the
data preparation.
Used by :func:`dfcourse.course.start` (so by every notebook), ``models`` (pretrained weights)
and ``clip_peft`` (CLIP weights).
"""
from __future__ import annotations

import os
import socket


def network_available(host: str = "huggingface.co", port: int = 443, timeout: float = 1.5) -> bool:
    """True when a TCP connection to ``host:port`` opens within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def setup_offline() -> bool:
    """Set ``HF_HUB_OFFLINE=1`` when the hub is unreachable, so open_clip/timm fail at once
    instead of retrying for ~46 s. Returns True when offline."""
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return True
    if network_available():
        return False
    os.environ["HF_HUB_OFFLINE"] = "1"
    return True
