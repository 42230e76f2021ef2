"""Names: validation of what users choose, generation of what the control plane chooses."""

from __future__ import annotations

import re
import secrets

from eventyard.platform.errors import BadRequest

# Matched with fullmatch: re's `$` also matches before a trailing newline, which let "shop\n" through.
APP_PATTERN = r"^[a-z][a-z0-9-]{1,29}$"  # Heroku's app names
ADDON_PATTERN = r"^[a-z][a-z0-9-]{2,62}$"
APP_NAME = re.compile(APP_PATTERN)
ADDON_NAME = re.compile(ADDON_PATTERN)
# Topic and group names, without the prefix: 1 to 200 of [A-Za-z0-9._-], but not "." or ".." (a URL
# path segment clients would resolve). Without lookarounds, so that the OpenAPI pattern is the same one.
RESOURCE_PATTERN = (
    r"^(?:[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}"
    r"|\.(?:[A-Za-z0-9_-][A-Za-z0-9._-]{0,198}|\.[A-Za-z0-9._-]{1,198}))$"
)
RESOURCE_NAME = re.compile(RESOURCE_PATTERN)
MAX_TOPIC_NAME = 249  # Kafka's limit, prefix included

_ADJECTIVES = (
    "amber", "brisk", "calm", "dusky", "eager", "fuzzy", "gentle", "hazy", "icy", "jolly", "keen",
    "lively", "misty", "noble", "olive", "proud", "quiet", "rapid", "sunny", "tidy", "vivid", "witty",
)  # fmt: skip
_NOUNS = (
    "alder", "birch", "cedar", "delta", "ember", "fjord", "grove", "heron", "inlet", "juniper",
    "kestrel", "lagoon", "maple", "nebula", "otter", "pebble", "quartz", "raven", "spruce", "tundra",
)  # fmt: skip


def check_app(app: str) -> str:
    if not APP_NAME.fullmatch(app):
        raise BadRequest(
            f"invalid app name {app!r}: 2 to 30 lowercase letters, digits and dashes, starting with a letter"
        )
    return app


def check_addon(name: str) -> str:
    if not ADDON_NAME.fullmatch(name):
        raise BadRequest(
            f"invalid add-on name {name!r}: "
            "3 to 63 lowercase letters, digits and dashes, starting with a letter"
        )
    return name


def check_resource(kind: str, name: str, prefix: str) -> str:
    """A topic or group name as the tenant gives it (without the prefix); returns the full name."""
    if not RESOURCE_NAME.fullmatch(name):
        raise BadRequest(f"invalid {kind} name {name!r}: letters, digits, '.', '_' and '-' only")
    full = prefix + name
    if kind == "topic" and len(full) > MAX_TOPIC_NAME:
        raise BadRequest(
            f"topic name too long: {len(full)} characters with the prefix, at most {MAX_TOPIC_NAME}"
        )
    return full


def new_addon_name() -> str:
    return f"kafka-{secrets.choice(_ADJECTIVES)}-{secrets.randbelow(90000) + 10000}"


def new_prefix() -> str:
    """A tenant's resource-name prefix, such as "misty-otter-4821."."""
    return f"{secrets.choice(_ADJECTIVES)}-{secrets.choice(_NOUNS)}-{secrets.randbelow(9000) + 1000}."


def new_username(prefix: str, app: str) -> str:
    return f"{prefix.rstrip('.')}-{app}-{secrets.token_hex(3)}"


def new_password() -> str:
    return secrets.token_urlsafe(32)
