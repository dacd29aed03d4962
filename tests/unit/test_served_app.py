"""What `registry serve`'s app does that an app made in a test does not."""

from __future__ import annotations

import gc
import shutil
from pathlib import Path

import pytest

from registry.app import create_app
from registry.config import load_settings

pytestmark = pytest.mark.anyio


async def test_a_served_app_freezes_what_its_start_made(
    tmp_path: Path, sqlite_template: Path
) -> None:
    """It moves what its start made out of the collector's way (app.py: full passes over
    it stalled requests for 100 ms); an app made beside others (tests) does not, since
    what they leave in cycles would stay."""
    shutil.copy(sqlite_template, tmp_path / "registry.db")
    settings = load_settings(None, {"REGISTRY_DATA_DIR": str(tmp_path)})
    gc.unfreeze()
    for served in (False, True):
        application = create_app(settings, served=served)
        try:
            async with application.router.lifespan_context(application):  # closes it
                assert (gc.get_freeze_count() > 0) is served
        finally:
            gc.unfreeze()
