"""pytest-benchmark micro-benchmarks of a node's main paths, in-process (``make bench`` runs
them with ``pytest tests/micro --benchmark-only``; the default ``pytest`` run ignores this
folder: ``--ignore=tests/micro`` in pyproject.toml).

Each one assembles a real :class:`~flight_server.node.Node` (``stack.py``) and times the
calls production makes (``Node.ingest``, ``Node.flush``, ``Node.query``, the catalog as the
query path uses it), never a part on its own outside the locks production holds.
"""
