"""Shared test set-up: Flower offline and with a project-local home, small models on demand."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.postgres import create_database, postgres_server

ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION", "1")
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
os.environ.setdefault("FLWR_HOME", str(ROOT / ".flwr-home"))


@pytest.fixture(scope="session")
def mlp_model():  # type: ignore[no-untyped-def]
    """The digits MLP exported from torch: (definition, weights)."""
    torch = pytest.importorskip("torch", reason="the torch exporter produces the reference MLP")
    from flonnx.exchange.adapters.torch_native import export_module
    from flonnx.exchange.zoo import build

    torch.manual_seed(0)
    return export_module(build("digits-mlp"), torch.zeros(2, 64), metadata={"flonnx.model": "digits-mlp"})


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL server for the session (tests/postgres.py): its database's URL."""
    with postgres_server() as url:
        yield url


@pytest.fixture()
def postgres_db(postgres_url: str) -> str:
    """A new empty database on the session's PostgreSQL server: its URL."""
    return create_database(postgres_url)
