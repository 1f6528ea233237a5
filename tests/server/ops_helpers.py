"""For the tests of what an operator runs: ``bastion serve`` with uvicorn left out."""

from __future__ import annotations

from typing import Any

import pytest

import bastion.cli


def capture_serve(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The settings ``bastion serve`` starts uvicorn with, from now on, instead of
    starting it; the variables it sets for its workers are undone after the test."""
    started: list[Any] = []
    monkeypatch.setattr(bastion.cli, "_uvicorn",
                        lambda args, settings, issuer: started.append(settings))
    for name in ("BASTION_ISSUER", "BASTION_DATABASE_URL", "BASTION_DATA_DIR"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    return started
