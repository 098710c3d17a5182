"""rtserver: a self-hosted Socket.IO-compatible real-time server on Trio."""

from .app import App, ClusterIncomplete, ConnectionRefused, Socket
from .auth.errors import Refusal
from .auth.identity import Identity
from .server import RunningServer, serve
from .version import __version__

__all__ = ["App", "ClusterIncomplete", "ConnectionRefused", "Identity", "Refusal", "RunningServer", "Socket", "__version__", "serve"]
