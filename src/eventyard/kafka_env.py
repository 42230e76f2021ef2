"""librdkafka settings from a platform add-on's config vars: the one translation shared by the
toolkit (eventyard.toolkit.config_from_env, for apps) and the developer CLI (`eventyard kafka tail`
and `write`). Standard library only, so that the CLI can load it without the toolkit."""

from __future__ import annotations

import re
from collections.abc import Mapping

_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://")

# Config vars that carry PEM text, and the librdkafka setting each one becomes.
_PEM_SETTINGS = (
    ("KAFKA_TRUSTED_CERT", "ssl.ca.pem"),
    ("KAFKA_CLIENT_CERT", "ssl.certificate.pem"),
    ("KAFKA_CLIENT_CERT_KEY", "ssl.key.pem"),
)


def bootstrap_servers(url: str) -> str:
    """librdkafka's host:port list from KAFKA_URL: kafka:// or kafka+ssl:// schemes are dropped."""
    return ",".join(_SCHEME.sub("", host.strip()) for host in url.split(",") if host.strip())


def settings_from_env(env: Mapping[str, str]) -> dict[str, str]:
    """librdkafka settings from KAFKA_URL (required), KAFKA_USERNAME, KAFKA_PASSWORD,
    KAFKA_SASL_MECHANISM (default SCRAM-SHA-512), KAFKA_SECURITY_PROTOCOL (default: SASL_SSL with a
    KAFKA_TRUSTED_CERT, else SASL_PLAINTEXT; without a user, SSL or PLAINTEXT), KAFKA_TRUSTED_CERT
    (CA PEM), and KAFKA_CLIENT_CERT and KAFKA_CLIENT_CERT_KEY (PEM, for mutual TLS).

    KAFKA_PREFIX is not a librdkafka setting: callers apply it to names themselves."""
    bootstrap = bootstrap_servers(env.get("KAFKA_URL", ""))
    if not bootstrap:
        raise ValueError("KAFKA_URL is not set")
    settings = {"bootstrap.servers": bootstrap}
    ca = env.get("KAFKA_TRUSTED_CERT")
    user = env.get("KAFKA_USERNAME")
    default = ("SASL_SSL" if ca else "SASL_PLAINTEXT") if user else ("SSL" if ca else "PLAINTEXT")
    protocol = env.get("KAFKA_SECURITY_PROTOCOL") or default
    settings["security.protocol"] = protocol
    if protocol.upper().startswith("SASL"):
        settings["sasl.mechanism"] = env.get("KAFKA_SASL_MECHANISM") or "SCRAM-SHA-512"
        settings["sasl.username"] = user or ""
        settings["sasl.password"] = env.get("KAFKA_PASSWORD", "")
    for variable, setting in _PEM_SETTINGS:
        if env.get(variable):
            settings[setting] = env[variable]
    return settings
