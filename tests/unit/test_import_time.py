"""Importing the registry sets nothing up: no metric is registered and no metrics
folder is made until a process serves (../shared/ARCHITECTURE.md), and the admin API is
put together where it is served (api/routes.py), not filled in by the order of imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROBE = """
import json, registry.cli, registry.app, registry.server, registry.api.routes
from prometheus_client import REGISTRY
print(json.dumps([m.name for m in REGISTRY.collect() if m.name.startswith("registry_")]))
"""


def test_importing_every_entry_point_registers_no_metric_and_writes_no_file(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "metrics"
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
    assert not folder.exists()


def test_the_admin_api_has_every_module_s_operations_in_their_order() -> None:
    from registry.api import accounts, webhooks
    from registry.api.routes import ADMIN_API

    operations = ADMIN_API.operations
    assert operations[: len(accounts.OPERATIONS.operations)] == accounts.OPERATIONS.operations
    assert operations[-len(webhooks.OPERATIONS.operations) :] == webhooks.OPERATIONS.operations
    assert len({(op.method, op.path) for op in operations}) == len(operations) >= 40
