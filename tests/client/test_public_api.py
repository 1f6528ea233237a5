"""The public surface: ``__all__`` is honest, and the SDK needs no server packages."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import bastion
import bastion.client
from bastion.client import exceptions

CLIENT_DIR = Path(bastion.client.__file__).parent
CONTRACT = ["Client", "AsyncClient", "configure", "TokenSet", "BastionError"]


def test_all_lists_exactly_the_public_names():
    for module in (bastion, bastion.client, exceptions):
        assert len(module.__all__) == len(set(module.__all__))
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name} missing"
        public = {
            name
            for name, value in vars(module).items()
            if not name.startswith("_")
            and getattr(value, "__module__", "").startswith("bastion")
            and not isinstance(value, type(sys))
        }
        assert public <= set(module.__all__), public - set(module.__all__)


def test_contract_names_and_exception_tree():
    for name in CONTRACT:
        assert name in bastion.__all__
    for name in exceptions.__all__:
        cls = getattr(bastion, name)
        assert issubclass(cls, bastion.BastionError), name
        assert not issubclass(cls, BaseException) or issubclass(cls, Exception)


def test_client_never_imports_the_server():
    for path in CLIENT_DIR.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                assert not name.startswith(("bastion.server", "fastapi", "sqlalchemy")), path


def test_sdk_imports_without_server_dependencies():
    blocked = ["fastapi", "starlette", "sqlalchemy", "alembic", "uvicorn", "pydantic"]
    code = (
        "import sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        "import bastion\n"
        "from bastion import Client, AsyncClient, configure, TokenSet, BastionError\n"
        "print(sorted(m for m in sys.modules if m.startswith('bastion.server')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_force_is_keyword_only_everywhere():
    """``delete(org, role, True)`` would read as anything; every ``force`` is named."""
    import importlib
    import pkgutil

    found = []
    for info in pkgutil.iter_modules(bastion.client.__path__):
        module = importlib.import_module(f"bastion.client.{info.name}")
        for cls in vars(module).values():
            if not (inspect.isclass(cls) and cls.__module__ == module.__name__):
                continue
            for name, method in vars(cls).items():
                method = getattr(method, "__func__", method)
                if inspect.isfunction(method) and "force" in inspect.signature(method).parameters:
                    force = inspect.signature(method).parameters["force"]
                    assert force.kind is inspect.Parameter.KEYWORD_ONLY, f"{cls.__name__}.{name}"
                    found.append(f"{cls.__name__}.{name}")
    assert len(found) == 8, found  # organizations and roles, sync and async, API and models
