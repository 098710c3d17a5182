"""What must survive a restart, and be the same on every node of a cluster."""

from .base import Mirror, Store, StoreError, StoreUnavailable
from .sqlite import SqliteStore

__all__ = ["Mirror", "SqliteStore", "Store", "StoreError", "StoreUnavailable"]
