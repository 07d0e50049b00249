"""File reading of ``miniodb ingest``: format detection, --types parsing, lossless casts."""

from __future__ import annotations

import gzip

import pyarrow as pa
import pytest

from clients import cli_io, errors


@pytest.mark.parametrize("name,expected", [
    ("a.csv", ("csv", None)), ("a.CSV.GZ", ("csv", "gzip")), ("a.tsv", ("tsv", None)), ("a.json.zst", ("json", "zstd")),
    ("a.ndjson", ("jsonl", None)), ("a.pq", ("parquet", None)), ("a.feather", ("arrow", None)),
])
def test_detect_format(name, expected):
    assert cli_io.detect_format(name) == expected


def test_unknown_extension_lists_every_format():
    with pytest.raises(errors.InvalidRequest) as e:
        cli_io.detect_format("data.xlsx")
    for fmt in (".csv", ".tsv", ".json", ".jsonl", ".ndjson", ".parquet", ".arrow", ".ipc", ".feather", ".gz",
                "--format"):
        assert fmt in e.value.message
    assert cli_io.detect_format("data.xlsx", "csv") == ("csv", None)


def test_parse_types():
    assert cli_io.parse_types("fare=float64, id=int64,price=decimal(10, 2),d=date,ts=timestamp[ms]") == {
        "fare": pa.float64(), "id": pa.int64(), "price": pa.decimal128(10, 2), "d": pa.date32(),
        "ts": pa.timestamp("ms")}
    for bad in ("fare", "fare=nonsense", "=int64"):
        with pytest.raises(errors.InvalidRequest):
            cli_io.parse_types(bad)


def test_float_to_decimal_must_be_exact():
    ok = cli_io.cast_lossless(pa.array([6.24, None]), pa.decimal128(10, 2), "fare")
    assert [str(v) if v is not None else None for v in ok.to_pylist()] == ["6.24", None]
    with pytest.raises(errors.InvalidRequest, match="fare.*6.245"):
        cli_io.cast_lossless(pa.array([1.0, 6.245]), pa.decimal128(10, 2), "fare")
    with pytest.raises(errors.InvalidRequest, match="fare"):
        cli_io.cast_lossless(pa.array(["6.24"]), pa.int64(), "fare")


def test_csv_inference_reads_the_whole_file(tmp_path):
    src = tmp_path / "late.csv.gz"
    src.write_bytes(gzip.compress(("n,ts\n" + "1,2024-01-01 10:00:00+02\n" * 30000 + "6.24,2024-01-01 10:00:00+02\n")
                                  .encode()))
    inp = cli_io.open_input(str(src), "csv", "gzip")
    assert inp.schema.field("n").type == pa.float64()
    assert inp.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert sum(b.num_rows for b in inp.batches) == 30001
