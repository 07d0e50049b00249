"""Shared fixtures: real services (moto_server, redis-server) and real node processes."""

import os

pytest_plugins = [
    "tests.fixtures.services",
    "tests.fixtures.s3",
    "tests.fixtures.redis",
    "tests.fixtures.node",
    "tests.fixtures.haproxy",
]


def pytest_collection_modifyitems(config, items):
    """``slow`` tests run first, dealt across the xdist workers. ``--dist load`` hands out the
    collection in order: first one chunk of ``len(items) // workers // 4`` items to each worker,
    then more to whichever runs low. Each first chunk starts with its share of the slow tests,
    so no 30-second test starts last (stretching the run) and no worker gets them all.
    Otherwise the collection order stays (module fixtures keep being shared)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    slow = [item for item in items if item.get_closest_marker("slow") is not None]
    if not slow:
        return
    fast = [item for item in items if item.get_closest_marker("slow") is None]
    chunk = max(2, len(items) // workers // 4)
    ordered = []
    for k in range(workers):
        share = slow[k::workers]
        ordered += share + fast[:max(0, chunk - len(share))]
        fast = fast[max(0, chunk - len(share)):]
    items[:] = ordered + fast
