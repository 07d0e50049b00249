"""pytest-benchmark micro-benchmarks of the node's building blocks (``make bench`` runs them with
``pytest bench/micro --benchmark-only``; ``make test`` does not collect them).

Unlike the rest of ``bench`` (which reaches nodes over the network and imports only
``clients``), these are in-process micro-benchmarks by nature: they import ``flight_server``
modules directly and time one function each.
"""
