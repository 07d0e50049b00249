"""The 22 TPC-H queries: the canonical copy is :mod:`bench.tpch_queries` (the bench runs them;
tests may import bench, bench may not import tests)."""

from bench.tpch_queries import QUERIES

__all__ = ["QUERIES"]
