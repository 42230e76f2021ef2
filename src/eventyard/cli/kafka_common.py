"""What `eventyard addons` and `eventyard kafka` share: the control plane's options, the client made
from them, API errors as one-line messages, picking the add-on, tables, and durations."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from eventyard.cli.cluster import table
from eventyard.cli.platform_client import DEFAULT_URL, PlatformClient, PlatformError

F = TypeVar("F", bound=Callable[..., Any])

_SETTINGS_KEY = "eventyard.platform"


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    # Kept on the context rather than passed to every command function.
    settings = ctx.meta.setdefault(_SETTINGS_KEY, {})
    assert param.name is not None
    settings[param.name] = value
    return value


def platform_options(func: F) -> F:
    """Add `--platform-url` and `--token` (and their environment variables) to a command."""
    func = click.option(
        "--token",
        envvar="EVENTYARD_PLATFORM_TOKEN",
        metavar="TOKEN",
        expose_value=False,
        callback=_remember,
        help="The platform's API token (env: EVENTYARD_PLATFORM_TOKEN).",
    )(func)
    return click.option(
        "--platform-url",
        envvar="EVENTYARD_PLATFORM_URL",
        default=DEFAULT_URL,
        show_default=True,
        metavar="URL",
        expose_value=False,
        callback=_remember,
        help="The control plane's address (env: EVENTYARD_PLATFORM_URL).",
    )(func)


def app_option(required: bool = False, help: str = "The app (env: EVENTYARD_APP).") -> Callable[[F], F]:
    return click.option("--app", "-a", envvar="EVENTYARD_APP", required=required, metavar="APP", help=help)


json_option = click.option("--json", "as_json", is_flag=True, help="Print the platform's JSON answer.")


def error_message(exc: PlatformError) -> str:
    if exc.status is None:
        return exc.message
    if exc.status == 401:
        return f"{exc.message} (set --token or EVENTYARD_PLATFORM_TOKEN)"
    if exc.code and exc.code not in exc.message:
        return f"{exc.message} ({exc.code})"
    return exc.message


@contextmanager
def platform() -> Iterator[PlatformClient]:
    """A client for the current command's platform; API errors become a message and exit status 1."""
    ctx = click.get_current_context()
    settings = ctx.meta.get(_SETTINGS_KEY, {})
    client = PlatformClient(settings.get("platform_url") or DEFAULT_URL, settings.get("token"))
    try:
        yield client
    except PlatformError as exc:
        raise click.ClickException(error_message(exc)) from exc
    finally:
        client.close()


def resolve_addon(client: PlatformClient, addon: str | None, app: str | None) -> str:
    """The add-on named, or else the one add-on of the app."""
    if addon:
        return addon
    if not app:
        raise click.UsageError("name the add-on, or give --app (or EVENTYARD_APP) to use its add-on")
    found = client.addons(app)
    if not found:
        raise click.ClickException(f"app {app!r} has no add-on (create one with `eventyard addons create`)")
    if len(found) > 1:
        names = ", ".join(str(item.get("name")) for item in found)
        raise click.ClickException(f"app {app!r} has several add-ons ({names}): name one")
    return str(found[0]["name"])


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


def echo_table(header: list[str], rows: list[list[str]], empty: str) -> None:
    if not rows:
        click.echo(empty)
        return
    for line in table([header, *rows]):
        click.echo(line)


def echo_fields(title: str, fields: list[tuple[str, str]]) -> None:
    click.echo(f"=== {title}")
    width = max((len(label) for label, _ in fields), default=0) + 1
    for label, value in fields:
        click.echo(f"{(label + ':').ljust(width)}  {value}")


# -- durations and sizes

_UNITS = {
    "ms": 0.001,
    "s": 1,
    "sec": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hr": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
    "w": 604800,
    "week": 604800,
}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([a-z]*)$")


def parse_duration(text: str) -> float:
    """Seconds in '30s', '500ms', '36h', '2d', '1 week', '90' (seconds)."""
    match = _DURATION.match(text.strip().lower())
    if match is not None:
        number, unit = float(match.group(1)), match.group(2)
        if not unit:
            return number
        if unit in _UNITS:
            return number * _UNITS[unit]
        if unit.endswith("s") and unit[:-1] in _UNITS:  # "hours", "days"
            return number * _UNITS[unit[:-1]]
    raise ValueError(f"{text!r} is not a duration such as 30s, 15m, 36h, 7d or 1 week")


class Duration(click.ParamType[float]):
    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, int | float):
            return float(value)
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
