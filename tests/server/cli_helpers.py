"""Running ``bastion`` in-process as an operator would, for the CLI tests."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable

import pytest

from bastion.cli import main

Invoke = Callable[..., tuple[int, str]]


def cli_runner(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Invoke:
    """``invoke(*args, stdin="", **env)`` runs ``main`` with no ``BASTION_*`` variable
    but ``env``; returns the exit code and stderr. ``stdin`` as bytes is decoded as
    UTF-8 strictly, as outside the C locale."""
    for key in [k for k in os.environ if k.startswith("BASTION_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("BASTION_PASSWORD_HASH_MEMORY_KIB", "8192")

    def invoke(*args: str, stdin: str | bytes = "", **env: str) -> tuple[int, str]:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin) if isinstance(stdin, str)
                            else io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return code, out.err
    return invoke


def one_line(err: str) -> str:
    assert "Traceback" not in err
    [line] = [line for line in err.splitlines() if line.startswith("error:")]
    return line
