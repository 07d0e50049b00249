"""Shared fixtures: real services (moto_server, redis-server) and real node processes."""

pytest_plugins = [
    "tests.fixtures.services",
    "tests.fixtures.s3",
    "tests.fixtures.redis",
    "tests.fixtures.node",
    "tests.fixtures.haproxy",
]
