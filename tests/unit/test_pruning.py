import duckdb
import pyarrow as pa

from flight_server.metadata.base import FileEntry
from flight_server.query.analyze import analyze, parse_tree
from flight_server.stats import bind_params, column_stats, prune

SCHEMA = pa.schema([("ts", pa.timestamp("us")), ("a", pa.int64()), ("s", pa.string())])


def _entry(key, table):
    mins, maxs = column_stats(table)
    return FileEntry(key=key, rows=table.num_rows, size=1, min_values=mins, max_values=maxs)


def _files():
    import datetime as dt

    out = []
    for day in range(1, 6):
        ts = [dt.datetime(2024, 1, day, h) for h in (0, 12, 23)]
        t = pa.table({"ts": pa.array(ts, pa.timestamp("us")), "a": [day * 10, day * 10 + 1, day * 10 + 2],
                      "s": [f"k{day}", "m", "z"]}, schema=SCHEMA)
        out.append(_entry(f"f{day}", t))
    return out


def _sets(sql):
    tree = parse_tree(duckdb.connect().execute("SELECT json_serialize_sql(?)", [sql]).fetchall()[0][0])
    ref = analyze(tree).tables["t"]
    return None if ref.unconstrained else ref.constraint_sets


def _keys(sql):
    return [f.key for f in prune(_files(), SCHEMA, _sets(sql))]


def test_prunes_to_one_day():
    assert _keys("SELECT * FROM t WHERE ts >= '2024-01-03' AND ts < '2024-01-04'") == ["f3"]
    assert _keys("SELECT * FROM t WHERE ts BETWEEN TIMESTAMP '2024-01-02 00:00:00' AND '2024-01-02 23:59:59'") == ["f2"]


def test_numeric_and_flipped_literals():
    assert _keys("SELECT * FROM t WHERE a > 41") == ["f4", "f5"]
    assert _keys("SELECT * FROM t WHERE 21 >= a") == ["f1", "f2"]
    assert _keys("SELECT * FROM t WHERE a = 30") == ["f3"]


def test_unsafe_shapes_keep_everything():
    every = [f"f{d}" for d in range(1, 6)]
    assert _keys("SELECT * FROM t WHERE a > 41 OR a < 0") == every
    assert _keys("SELECT * FROM t") == every
    assert _keys("SELECT * FROM t WHERE a > 41 UNION ALL SELECT * FROM t") == every
    assert _keys("SELECT * FROM t WHERE a > 'x'") == every  # un-castable literal: no pruning


def test_union_of_constraint_sets():
    assert _keys("SELECT * FROM t WHERE a < 12 UNION ALL SELECT * FROM t WHERE a > 51") == ["f1", "f5"]


def test_nan_disables_float_stats():
    t = pa.table({"x": [1.0, float("nan")]})
    mins, maxs = column_stats(t)
    assert "x" not in mins


def test_in_lists_prune_to_the_files_holding_a_listed_value():
    assert _keys("SELECT * FROM t WHERE a IN (11, 52)") == ["f1", "f5"]
    assert _keys("SELECT * FROM t WHERE a IN (11, 52) AND ts < '2024-01-02'") == ["f1"]
    assert _keys("SELECT * FROM t WHERE ts IN (TIMESTAMP '2024-01-03 12:00:00', '2024-01-04 00:00:00')") == ["f3", "f4"]
    assert _keys("SELECT * FROM t WHERE a IN (11, a + 1)") == [f"f{d}" for d in range(1, 6)]  # not all literals
    assert _keys("SELECT * FROM t WHERE a NOT IN (11)") == [f"f{d}" for d in range(1, 6)]


def test_parameters_prune_once_bound():
    import datetime as dt

    def keys(sql, params):
        return [f.key for f in prune(_files(), SCHEMA, bind_params(_sets(sql), params))]

    every = [f"f{d}" for d in range(1, 6)]
    assert keys("SELECT * FROM t WHERE a = ?", [30]) == ["f3"]
    assert keys("SELECT * FROM t WHERE a >= $2 AND a < $1", [31, 20]) == ["f2", "f3"]
    assert keys("SELECT * FROM t WHERE ts >= ? AND ts < ?", [dt.datetime(2024, 1, 2), dt.datetime(2024, 1, 3)]) == ["f2"]
    assert keys("SELECT * FROM t WHERE a IN (?, ?)", [11, 42]) == ["f1", "f4"]
    assert keys("SELECT * FROM t WHERE a = ?", None) == every  # not bound (a prepare): no pruning
    assert keys("SELECT * FROM t WHERE a = ?", [None]) == every
    assert keys("SELECT * FROM t WHERE a = ?", ["30"]) == every  # DuckDB casts the text: keep everything
    # an unbound parameter never reads as its position
    assert [f.key for f in prune(_files(), SCHEMA, _sets("SELECT * FROM t WHERE a = $3"))] == every


def test_large_integer_keys_compare_exactly():
    big = 2**53 + 1  # not a float
    files = [_entry(f"g{i}", pa.table({"a": pa.array([big + i], pa.int64())})) for i in range(3)]
    schema = pa.schema([("a", pa.int64())])
    sets = _sets(f"SELECT * FROM t WHERE a = {big}")
    assert [f.key for f in prune(files, schema, sets)] == ["g0"]
    assert [f.key for f in prune(files, schema, bind_params(_sets("SELECT * FROM t WHERE a = ?"), [big + 2]))] == ["g2"]


def test_timestamp_and_date_literals_take_the_value_arrows_cast_gives():
    """literal_value's plain-ISO shortcut (no Arrow arrays per literal) agrees with Arrow's
    cast wherever Arrow accepts the text, and declines (None: Arrow decides) what a unit
    cannot hold exactly."""
    import datetime as dt
    import random

    from flight_server.stats import literal_value

    rng = random.Random(7)
    checked = 0
    for _ in range(3000):
        d = dt.datetime(1, 1, 1) + dt.timedelta(seconds=rng.randint(0, 315537897599),
                                                microseconds=rng.choice([0, rng.randint(0, 999999)]))
        iso = d.isoformat(sep=" ")  # zero-padded years (strftime's %Y is not, below 1000)
        for text in (iso[:10], iso[:16], iso[:19].replace(" ", "T"), iso):
            for unit in ("s", "ms", "us", "ns"):
                t = pa.timestamp(unit)
                try:
                    want = pa.array([text.replace("T", " ")]).cast(t).cast(pa.int64())[0].as_py()
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    continue
                assert literal_value(text, "STRING", t) == want, (text, unit)
                checked += 1
            want_day = pa.array([text[:10]]).cast(pa.date32()).cast(pa.int32())[0].as_py()
            assert literal_value(text, "DATE", pa.date32()) == want_day
    assert checked > 10_000
    assert literal_value("2024-01-01 00:00:00.5", "STRING", pa.timestamp("s")) is None  # not exact in seconds
    assert literal_value("2024-01-01 00:00:00.5", "STRING", pa.timestamp("ms")) == 1704067200500
    zoned = pa.timestamp("us", tz="Europe/Paris")  # zoned columns keep Arrow's cast (naive text: refused)
    assert literal_value("2024-01-01", "STRING", zoned) is None
    assert literal_value("2024-01-01 00:00:00+01:00", "STRING", zoned) == 1704063600000000
