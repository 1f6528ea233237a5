"""Every ```python block of docs/sdk.md runs against the real server."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bastion import configure
from support import ServerProcess

DOC = Path(__file__).resolve().parents[2] / "docs" / "sdk.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def test_the_doc_has_examples() -> None:
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("source", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_example_runs(source: str, bastion_server: ServerProcess) -> None:
    namespace = {
        "ISSUER": bastion_server.url,
        "CLIENT_ID": bastion_server.client_id,
        "CLIENT_SECRET": bastion_server.client_secret,
        "__name__": "sdk_doc_example",
    }
    try:
        exec(compile(source, str(DOC), "exec"), namespace)  # noqa: S102 - our own docs
    finally:
        configure()
