"""Helpers for testing against a real Eventyard broker: in this process or in a child process."""

from eventyard.testing.embedded import EmbeddedBroker
from eventyard.testing.process import BrokerProcess

__all__ = ["BrokerProcess", "EmbeddedBroker"]
