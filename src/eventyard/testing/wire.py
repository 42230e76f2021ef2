"""Moved to eventyard.wire_client; kept so that older imports keep working."""

from eventyard.wire_client import WireClient

__all__ = ["WireClient"]
