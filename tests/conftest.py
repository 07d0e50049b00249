"""Shared fixtures: real services (moto_server, redis-server) and real node processes."""

pytest_plugins = [
    "tests.fixtures.services",
    "tests.fixtures.s3",
    "tests.fixtures.redis",
    "tests.fixtures.node",
    "tests.fixtures.haproxy",
]


def pytest_collection_modifyitems(config, items):
    """``slow`` tests run first: with pytest-xdist (``--dist load`` hands out items in collection
    order) a 30-second test that starts last would stretch the whole run; started first, the
    other worker goes through the short tests meanwhile. Otherwise the collection order stays."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
