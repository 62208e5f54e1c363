"""What the app does when it starts serving: what start-up built is frozen out of the garbage
collector's walks (a collection then costs what a request made, not the whole start-up heap —
measured about 70 µs of CPU a request without it)."""

from __future__ import annotations

import gc

from proxy.app import create_app
from proxy.config import Settings
from tests.conftest import SERVER_TOOLS


async def test_start_up_objects_are_frozen_out_of_collections() -> None:
    gc.unfreeze()
    app = create_app(Settings(upstream="http://127.0.0.1:9/v1"), SERVER_TOOLS)
    try:
        async with app.router.lifespan_context(app):
            assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
