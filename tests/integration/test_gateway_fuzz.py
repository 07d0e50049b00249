"""Property-based fuzzing of the REST gateway from its own OpenAPI document (schemathesis):
no generated request, valid or not, may get a 5xx from a live node.

The run goes against a throwaway node. ``POST /metadata/restore`` is left out (it would
replace the node's metadata while the fuzzer works on it); everything else is fuzzed,
table creation and deletion included. ``MINIODB_FUZZ_EXAMPLES`` / ``MINIODB_FUZZ_SEED``
widen or vary the run.
"""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

pytestmark = pytest.mark.slow


def test_openapi_document_validates(node):
    from openapi_spec_validator import validate

    doc = httpx.get(node.rest + "/api/v1/openapi.json", timeout=30).json()
    validate(doc)
    assert {"/health", "/data", "/query", "/tables", "/tables/{name}", "/flush", "/metadata/backup",
            "/metadata/backups", "/metadata/restore", "/metadata/status", "/status"} <= set(doc["paths"])


def test_fuzz_finds_no_server_error(node, tmp_path):
    examples = os.environ.get("MINIODB_FUZZ_EXAMPLES", "25")
    seed = os.environ.get("MINIODB_FUZZ_SEED", "20240118")
    cmd = [sys.executable, "-m", "schemathesis.cli", "run", node.rest + "/api/v1/openapi.json",
           "--checks", "not_a_server_error", "--max-examples", examples, "--seed", seed,
           "--exclude-operation-id", "restoreMetadata", "--workers", "1", "--request-timeout", "60",
           "--suppress-health-check", "all", "--no-color"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "SCHEMATHESIS_HOOKS": "", "NO_COLOR": "1"})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"schemathesis found server errors:\n{out[-12000:]}\n--- node log:\n{node.log()}"
    assert "Tested: " in out
    h = httpx.get(node.rest + "/api/v1/health", timeout=30)
    assert h.status_code == 200, h.text  # still serving after the run
