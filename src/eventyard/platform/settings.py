"""The control plane's settings, from EVENTYARD_PLATFORM_* environment variables or arguments."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from eventyard.platform.plans import PLANS, Plan

SECURITY_PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT", "SSL", "SASL_SSL")


@dataclass(frozen=True, slots=True)
class Settings:
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))  # the operator's bearer token
    db_url: str = "sqlite:///platform.db"
    # The control plane's own connection to the cluster: a super user (or one with ALTER on the
    # cluster), SCRAM over SASL_PLAINTEXT or SASL_SSL in production.
    bootstrap: str = "127.0.0.1:9092"
    admin_security_protocol: str = "PLAINTEXT"
    admin_mechanism: str = "SCRAM-SHA-512"
    admin_user: str | None = None
    admin_password: str | None = None
    # What apps are told: their bootstrap list (default: the admin's) and protocol.
    app_bootstrap: str | None = None
    app_security_protocol: str = "SASL_PLAINTEXT"
    ca_file: Path | None = None  # the cluster's CA: trusted by the admin and handed to apps (TLS)
    reap_interval_s: float = 5.0
    provision_workers: int = 4
    default_grace_period_s: int = 300
    plans: dict[str, Plan] = field(default_factory=lambda: dict(PLANS))

    def __post_init__(self) -> None:
        for name in (self.admin_security_protocol, self.app_security_protocol):
            if name not in SECURITY_PROTOCOLS:
                raise ValueError(
                    f"unknown security protocol {name!r}: one of {', '.join(SECURITY_PROTOCOLS)}"
                )
        if not self.app_security_protocol.startswith("SASL_"):
            raise ValueError("apps authenticate with SCRAM: use SASL_PLAINTEXT or SASL_SSL")
        if self.admin_security_protocol.startswith("SASL_") and not (self.admin_user and self.admin_password):
            raise ValueError(f"{self.admin_security_protocol} needs an admin user and password")

    @property
    def apps_bootstrap(self) -> str:
        return self.app_bootstrap or self.bootstrap

    @property
    def ca_pem(self) -> str | None:
        return self.ca_file.read_text() if self.ca_file else None

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """EVENTYARD_PLATFORM_* variables, then explicit overrides (None: not given)."""
        names = {
            "token": "TOKEN",
            "db_url": "DB",
            "bootstrap": "BOOTSTRAP",
            "admin_security_protocol": "ADMIN_SECURITY_PROTOCOL",
            "admin_mechanism": "ADMIN_MECHANISM",
            "admin_user": "ADMIN_USER",
            "admin_password": "ADMIN_PASSWORD",
            "app_bootstrap": "APP_BOOTSTRAP",
            "app_security_protocol": "APP_SECURITY_PROTOCOL",
            "ca_file": "CA_FILE",
            "reap_interval_s": "REAP_INTERVAL",
        }
        values: dict[str, object] = {}
        for attribute, suffix in names.items():
            raw = os.environ.get(f"EVENTYARD_PLATFORM_{suffix}")
            if raw:
                values[attribute] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "ca_file" in values:
            values["ca_file"] = Path(str(values["ca_file"]))
        if "reap_interval_s" in values:
            values["reap_interval_s"] = float(str(values["reap_interval_s"]))
        if "admin_security_protocol" not in values and values.get("admin_user"):
            values["admin_security_protocol"] = "SASL_SSL" if values.get("ca_file") else "SASL_PLAINTEXT"
        if "app_security_protocol" not in values and values.get("ca_file"):
            values["app_security_protocol"] = "SASL_SSL"
        return cls(**values)  # type: ignore[arg-type]
