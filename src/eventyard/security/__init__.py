"""Authentication: SCRAM credentials and the per-connection SASL state machine (sans-IO)."""

from eventyard.security.credentials import (
    AlterResult,
    CredentialError,
    CredentialStore,
    CredentialStoreError,
    Mechanism,
    ScramCredential,
    UserDescription,
)
from eventyard.security.sasl import SUPPORTED_MECHANISMS, ReplayGuard, SaslServer, Step

__all__ = [
    "SUPPORTED_MECHANISMS",
    "AlterResult",
    "CredentialError",
    "CredentialStore",
    "CredentialStoreError",
    "Mechanism",
    "ReplayGuard",
    "SaslServer",
    "ScramCredential",
    "Step",
    "UserDescription",
]
