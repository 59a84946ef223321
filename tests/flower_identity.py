"""A Flower run identity for tests that build ``Message`` objects outside a Flower run.

Import the fixture into a test module (``from tests.flower_identity import flower_identity``):
it is autouse there. Internal Flower API, test only.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flwr.supercore.task_identity import TaskIdentity


@pytest.fixture(autouse=True)
def flower_identity() -> Iterator[None]:
    """Messages need a run id; outside a Flower run nobody sets one. Restored afterwards."""
    previous = TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id  # noqa: SLF001
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = previous  # noqa: SLF001
