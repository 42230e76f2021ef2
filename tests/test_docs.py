"""Documentation that shows code is executed, and the compatibility table matches the broker."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from eventyard.protocol import api as protocol
from eventyard.protocol.messages.api_versions_request import ApiVersionsRequest
from eventyard.testing import BrokerProcess
from eventyard.wire_client import WireClient

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def python_blocks() -> list[tuple[str, str]]:
    blocks = []
    for doc in DOCS:
        for i, block in enumerate(re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)):
            blocks.append((f"{doc.name}#{i}", block))
    return blocks


@pytest.mark.parametrize(("where", "code"), python_blocks(), ids=[w for w, _ in python_blocks()])
def test_python_blocks_run(where: str, code: str) -> None:
    # dont_inherit: this file's `from __future__ import annotations` must not leak into the docs' code.
    exec(compile(code, where, "exec", dont_inherit=True), {"__name__": "__doc__"})


def test_compatibility_table_matches_api_versions(broker: BrokerProcess) -> None:
    table = (ROOT / "docs" / "compatibility.md").read_text()
    documented = {
        int(key): (int(lo), int(hi))
        for key, lo, hi in re.findall(r"^\| (\d+) \| \w+ \| (\d+)-(\d+) \|", table, re.M)
    }
    with WireClient(broker.host, broker.port) as client:
        response = client.request(
            ApiVersionsRequest(client_software_name="docs", client_software_version="1"), 3
        )
    advertised = {k.api_key: (k.min_version, k.max_version) for k in response.api_keys}
    assert documented == advertised
    names = dict(re.findall(r"^\| (\d+) \| (\w+) \|", table, re.M))
    assert all(protocol.api(int(k)).name == name for k, name in names.items())
