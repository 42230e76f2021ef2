"""Helpers for testing against a real Eventyard broker."""

from eventyard.testing.process import BrokerProcess

__all__ = ["BrokerProcess"]
