"""rtserver: a self-hosted Socket.IO-compatible real-time server on Trio."""

from .app import App, ConnectionRefused, Socket
from .server import RunningServer, serve

__version__ = "0.1.0"

__all__ = ["App", "ConnectionRefused", "RunningServer", "Socket", "__version__", "serve"]
