"""The ``miniodb`` client commands and the Python client against a real node process:
all-or-nothing ingest, typed file reading, URIs, output formats, messages and help."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from clients import errors
from clients.cli import main
from tests.fixtures.node import NodeProcess

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shared_node(tmp_path_factory):
    n = NodeProcess(tmp_path_factory.mktemp("cli") / "node").start()
    yield n
    n.terminate()


def cli(node, *args, uri_after: bool = False):
    """Run ``miniodb`` in-process (click's runner); the URI goes before or after the command."""
    argv = [*args, "--uri", node.flight] if uri_after else ["--uri", node.flight, *args]
    return CliRunner().invoke(main, argv, catch_exceptions=False)


def count(node, table: str) -> int:
    """Rows of ``table``; 0 if there is no such table."""
    with node.client() as c:
        try:
            return c.query(f"SELECT count(*) AS n FROM {table}").column("n")[0].as_py()
        except errors.NotFound:
            return 0


def trips_csv(path: Path, good: int, bad_value: str | None, tail: int = 0) -> Path:
    """``good`` rows with a whole-number fare, then ``tail`` rows whose fare is ``bad_value``."""
    ids = pa.array(range(good + tail), pa.int64())
    fares = [str(i % 50) for i in range(good)] + [bad_value] * tail
    pacsv.write_csv(pa.table({"id": ids, "fare": pa.array(fares), "city": ["Oslo"] * (good + tail)}), path)
    return path


# -- all or nothing ------------------------------------------------------------------------

def test_failed_ingest_commits_nothing(shared_node, tmp_path):
    """The issue's repro: integral fares for 150k rows, then 6.24. Forced to int64, the load
    fails late in the file, and the node keeps none of it (the upload is aborted)."""
    src = trips_csv(tmp_path / "big_trips.csv", 150_000, "6.24", 50_000)
    r = cli(shared_node, "ingest", str(src), "--table", "big_trips2", "--types", "fare=int64")
    assert r.exit_code == 2, r.output
    assert "fare" in r.output and "6.24" in r.output and "Traceback" not in r.output
    assert count(shared_node, "big_trips2") == 0
    # the same file without forced types: whole-file inference makes fare a float
    r = cli(shared_node, "ingest", str(src), "--table", "big_trips3")
    assert r.exit_code == 0, r.output
    assert count(shared_node, "big_trips3") == 200_000
    with shared_node.client() as c:
        assert c.table_schema("big_trips3").field("fare").type == pa.float64()


def test_python_client_aborts_upload_when_input_fails(shared_node):
    schema = pa.schema([("a", pa.int64())])

    def batches(exc: BaseException):
        for i in range(5):
            yield pa.record_batch([pa.array(range(i * 1000, (i + 1) * 1000))], schema=schema)
        raise exc

    with shared_node.client() as c:
        c.ingest("aborted", pa.table({"a": [1]}))
        with pytest.raises(errors.InvalidRequest, match="bad value"):
            c.ingest("aborted", pa.RecordBatchReader.from_batches(schema, batches(pa.ArrowInvalid("bad value"))))
        with pytest.raises(ValueError, match="boom"):
            c.ingest("aborted", pa.RecordBatchReader.from_batches(schema, batches(ValueError("boom"))))
        assert c.query("SELECT count(*) AS n FROM aborted").column("n")[0].as_py() == 1
        # a failed load that would have created its table leaves no table behind either
        with pytest.raises(ValueError, match="boom"):
            c.ingest("aborted_new", pa.RecordBatchReader.from_batches(schema, batches(ValueError("boom"))))
        assert "aborted_new" not in [t["name"] for t in c.tables()]
        with pytest.raises(errors.NotFound):
            c.query("SELECT count(*) FROM aborted_new")


# -- typed reading -------------------------------------------------------------------------

def test_csv_into_decimal_table_uses_its_types(shared_node, tmp_path):
    with shared_node.client() as c:
        c.execute("CREATE TABLE prices (item VARCHAR, price DECIMAL(10,2), zip VARCHAR)")
    src = tmp_path / "prices.csv"
    src.write_text("item,price,zip\napple,1.25,0042\npear,6.24,1000\n")
    r = cli(shared_node, "ingest", str(src), "--table", "prices")
    assert r.exit_code == 0, r.output
    with shared_node.client() as c:
        t = c.query("SELECT * FROM prices ORDER BY item")
    assert t.schema.field("price").type == pa.decimal128(10, 2)
    assert [str(v) for v in t.column("price").to_pylist()] == ["1.25", "6.24"]
    assert t.column("zip").to_pylist() == ["0042", "1000"]  # the table says text: no int guess
    lossy = tmp_path / "lossy.csv"
    lossy.write_text("item,price,zip\nplum,6.245,1\n")
    r = cli(shared_node, "ingest", str(lossy), "--table", "prices")
    assert r.exit_code == 2 and "price" in r.output
    assert count(shared_node, "prices") == 2


def test_csv_into_temporal_table(shared_node, tmp_path):
    with shared_node.client() as c:
        c.execute("CREATE TABLE stamps (seen TIMESTAMPTZ, day DATE, ok BOOLEAN)")
    src = tmp_path / "stamps.csv"
    src.write_text("seen,day,ok\n2024-01-01 10:00:00,2024-01-01,true\n2024-01-01T10:00:00+02:00,2024-01-02,f\n")
    r = cli(shared_node, "ingest", str(src), "--table", "stamps")
    assert r.exit_code == 0, r.output
    with shared_node.client() as c:
        t = c.query("SELECT epoch(seen)::BIGINT AS s, day::VARCHAR AS day, ok FROM stamps ORDER BY day")
    assert t.to_pylist() == [{"s": 1704103200, "day": "2024-01-01", "ok": True},
                             {"s": 1704096000, "day": "2024-01-02", "ok": False}]


@pytest.mark.parametrize("name,write", [
    ("semi.csv", lambda p: p.write_text("a;b\n1;x\n2;y\n")),
    ("tabs.tsv", lambda p: p.write_text("a\tb\n1\tx\n2\ty\n")),
    ("zipped.csv.gz", lambda p: p.write_bytes(gzip.compress(b"a,b\n1,x\n2,y\n"))),
    ("array.json", lambda p: p.write_text(json.dumps([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]))),
    ("lines.jsonl", lambda p: p.write_text('{"a": 1, "b": "x"}\n{"a": 2, "b": "y"}\n')),
    ("lines.json", lambda p: p.write_text('{"a": 1, "b": "x"}\n{"a": 2, "b": "y"}\n')),
])
def test_ingest_formats(shared_node, tmp_path, name, write):
    src = tmp_path / name
    write(src)
    table = "fmt_" + name.replace(".", "_")
    r = cli(shared_node, "ingest", str(src), "--table", table)
    assert r.exit_code == 0, r.output
    with shared_node.client() as c:
        t = c.query(f"SELECT a, b FROM {table} ORDER BY a")
    assert t.to_pylist() == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    assert t.schema.field("a").type == pa.int64()


def test_ingest_options_delimiter_types_format(shared_node, tmp_path):
    src = tmp_path / "data.txt"
    src.write_text("id|fare\n1|2\n2|3\n")
    r = cli(shared_node, "ingest", str(src), "--table", "piped")
    assert r.exit_code == 2 and ".csv" in r.output and ".parquet" in r.output and ".json" in r.output
    assert ".tsv" in r.output and ".arrow" in r.output and "--format" in r.output
    r = cli(shared_node, "ingest", str(src), "--table", "piped", "--format", "csv", "--delimiter", "|",
            "--types", "fare=float64, id=int32")
    assert r.exit_code == 0, r.output
    with shared_node.client() as c:
        schema = c.table_schema("piped")
    assert schema.field("fare").type == pa.float64() and schema.field("id").type == pa.int32()


def test_one_column_with_semicolons_gets_a_hint(shared_node, tmp_path):
    src = tmp_path / "semi.csv"
    src.write_text("a;b\n1;x\n")
    r = cli(shared_node, "ingest", str(src), "--table", "semi_forced", "--delimiter", ",")
    assert r.exit_code == 2 and "--delimiter ';'" in r.output


def test_header_only_csv(shared_node, tmp_path):
    src = tmp_path / "empty.csv"
    src.write_text("a,b\n")
    r = cli(shared_node, "ingest", str(src), "--table", "header_only")
    assert r.exit_code == 2 and "--types" in r.output
    with shared_node.client() as c:
        assert c.table_schema("header_only") is None
    r = cli(shared_node, "ingest", str(src), "--table", "header_only", "--types", "a=int64,b=string")
    assert r.exit_code == 0, r.output
    with shared_node.client() as c:
        assert c.table_schema("header_only").types == [pa.int64(), pa.string()]
    r = cli(shared_node, "ingest", str(src), "--table", "header_only")  # the table gives the types now
    assert r.exit_code == 0 and "no rows" in r.output


def test_types_must_name_columns_of_the_file(shared_node, tmp_path):
    src = tmp_path / "few.csv"
    src.write_text("a,b\n1,2\n")
    r = cli(shared_node, "ingest", str(src), "--table", "few", "--types", "c=int64")
    assert r.exit_code == 2 and "'c'" not in r.output and "c" in r.output and "a, b" in r.output
    with shared_node.client() as c:
        assert c.table_schema("few") is None


def test_empty_parquet_creates_its_table(shared_node, tmp_path):
    src = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"a": pa.array([], pa.int32()), "b": pa.array([], pa.string())}), src)
    r = cli(shared_node, "ingest", str(src), "--table", "empty_pq")
    assert r.exit_code == 0, r.output
    with shared_node.client() as c:
        assert c.table_schema("empty_pq").types == [pa.int32(), pa.string()]


# -- URIs, errors, options -----------------------------------------------------------------

def test_uri_forms(shared_node):
    host_port = shared_node.flight.split("://", 1)[1]
    r = CliRunner().invoke(main, ["--uri", host_port, "tables"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    for bad in ("http://localhost:8081", "https://example.com"):
        r = CliRunner().invoke(main, ["--uri", bad, "tables"], catch_exceptions=False)
        assert r.exit_code == 2
        assert "grpc://" in r.output and "grpc+tls://" in r.output and "host:port" in r.output
        assert len(r.output.strip().splitlines()) == 1
    with pytest.raises(errors.InvalidRequest, match="HTTP"):
        from clients import Client

        Client("http://localhost:8081")


def test_errors_are_one_line_in_a_real_process(shared_node, tmp_path):
    """As a user runs it: a subprocess, no traceback, non-zero exit."""
    arr = tmp_path / "broken.json"
    arr.write_text('[{"a": 1}, {"a": ')
    for args in (["--uri", "http://localhost:8081", "sql", "SELECT 1"],
                 ["--uri", shared_node.flight, "ingest", str(arr), "--table", "scalars"],
                 ["sql", "SELECT * FROM nowhere", "--uri", shared_node.flight]):
        r = subprocess.run([sys.executable, "-m", "clients.cli", *args], capture_output=True, text=True, cwd=REPO,
                           timeout=120)
        assert r.returncode != 0, args
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_connection_options_after_the_command(shared_node):
    r = cli(shared_node, "sql", "SELECT 42 AS x", "--format", "csv", uri_after=True)
    assert r.exit_code == 0 and [line.strip('"') for line in r.output.splitlines()] == ["x", "42"]


def test_help_documents_options_defaults_and_env():
    runner = CliRunner()
    top = runner.invoke(main, ["--help"]).output
    for env in ("MINIODB_URI", "MINIODB_TOKEN", "MINIODB_USERNAME", "MINIODB_PASSWORD", "MINIODB_TLS_ROOT_CERTS"):
        assert env in top
    assert "create_append" in runner.invoke(main, ["ingest", "--help"]).output  # the default, shown
    assert "default: the -o file's extension" in " ".join(runner.invoke(main, ["sql", "--help"]).output.split())
    for name in ("sql", "ingest", "tables", "describe", "flush", "status", "backup", "backups", "restore", "compact"):
        for param in main.commands[name].params:
            if isinstance(param, pytest.importorskip("click").Option):
                assert param.help, f"{name} {param.opts} has no help"


# -- sql output ------------------------------------------------------------------------------

def test_sql_csv_with_nested_columns(shared_node):
    r = cli(shared_node, "sql", "SELECT [1,2] AS l, {'x': 1} AS s, MAP {'k': 2} AS m, 'a' AS t", "--format", "csv")
    assert r.exit_code == 0, r.output
    rows = list(__import__("csv").reader(r.output.splitlines()))
    assert rows[0] == ["l", "s", "m", "t"]
    assert json.loads(rows[1][0]) == [1, 2] and json.loads(rows[1][1]) == {"x": 1} and rows[1][3] == "a"


@pytest.mark.parametrize("suffix", ["parquet", "csv", "json"])
def test_sql_output_format_from_extension(shared_node, tmp_path, suffix):
    out = tmp_path / f"out.{suffix}"
    r = cli(shared_node, "sql", "SELECT 1 AS a, 'x' AS b UNION ALL SELECT 2, 'y' ORDER BY a", "-o", str(out))
    assert r.exit_code == 0, r.output
    if suffix == "parquet":
        assert pq.read_table(out).to_pylist() == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    elif suffix == "csv":
        assert pacsv.read_csv(out).to_pylist() == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    else:
        assert [json.loads(line) for line in out.read_text().splitlines()] == [{"a": 1, "b": "x"},
                                                                                {"a": 2, "b": "y"}]
    assert "│" not in out.read_bytes().decode(errors="replace")
    r = cli(shared_node, "sql", "SELECT 1", "-o", str(tmp_path / "out.xyz"))
    assert r.exit_code == 2 and "--format" in r.output


def test_ddl_and_dml_say_what_happened(shared_node):
    assert cli(shared_node, "sql", "CREATE TABLE said (a BIGINT)").output.strip() == "table created"
    assert cli(shared_node, "sql", "INSERT INTO said VALUES (1), (2), (3)").output.strip() == "3 rows inserted"
    assert cli(shared_node, "sql", "DROP TABLE said").output.strip() == "table dropped"


def test_python_client_export():
    import clients
    from clients.flight import Client

    assert clients.Client is Client
    code = "import sys, clients; assert 'pyarrow.flight' not in sys.modules; from clients import Client"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


def test_readme_python_examples_run_on_their_own_tables(shared_node):
    """Every Python example of the README runs as written (against this node), each on a table
    of its own, so following them in order gives no mixed-shape table."""
    import re

    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 2
    seen: dict[str, int] = {}
    for i, code in enumerate(blocks):
        for name in set(re.findall(r"\b(?:adbc_ingest|ingest)\(\"(\w+)\"", code)):
            assert name not in seen, f"README examples {seen.get(name)} and {i} both write table {name!r}"
            seen[name] = i
        exec(compile(code.replace("grpc://localhost:8080", shared_node.flight), f"README block {i}", "exec"), {})
    with shared_node.client() as c:
        assert c.query("SELECT count(*) AS n FROM client_demo").column("n")[0].as_py() == 2


def test_tls_and_auth_options_after_the_command_and_from_env(tmp_path):
    from tests.fixtures.certs import make_certs

    certs = make_certs(tmp_path / "certs")
    key = "cli-key-4c1d9e"
    env = {"MINIODB_SERVER_TLS_ENABLED": "true", "MINIODB_SERVER_TLS_CERT_FILE": str(certs.cert_file),
           "MINIODB_SERVER_TLS_KEY_FILE": str(certs.key_file), "MINIODB_SERVER_AUTH_ENABLED": "true",
           "MINIODB_SERVER_API_KEYS": key}
    n = NodeProcess(tmp_path / "tls", env=env).start()
    try:
        runner = CliRunner()
        after = ["sql", "SELECT 7 AS x", "--format", "csv", "--uri", n.flight, "--tls-root-certs",
                 str(certs.ca_file), "--token", key]
        r = runner.invoke(main, after, catch_exceptions=False)
        assert r.exit_code == 0 and r.output.splitlines()[-1] == "7", r.output
        r = runner.invoke(main, ["sql", "SELECT 7 AS x", "--format", "csv"], catch_exceptions=False,
                          env={"MINIODB_URI": n.flight,
                               "MINIODB_TLS_ROOT_CERTS": str(certs.ca_file), "MINIODB_USERNAME": "u",
                               "MINIODB_PASSWORD": key})
        assert r.exit_code == 0 and r.output.splitlines()[-1] == "7", r.output
        r = runner.invoke(main, after[:-1] + ["wrong-key"], catch_exceptions=False)
        assert r.exit_code == 1 and "unauthenticated" in r.output and len(r.output.strip().splitlines()) == 1
    finally:
        n.terminate()
