"""Literal templates (flight_server/query/template.py): a text that differs from an earlier one
only in its literals gets the analysis DuckDB's own parse would give, without a parse."""

from __future__ import annotations

import re

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flight_server.query import statement as stmod
from flight_server.query.template import Templates, split

PATTERNS = [
    "SELECT count(*) FROM t WHERE k = {i}",
    "SELECT count(*), sum(v) FROM ev WHERE ts >= TIMESTAMP {s} AND ts < TIMESTAMP {s}",
    "SELECT * FROM t WHERE name = {s} AND v > {d} ORDER BY 1 LIMIT {i}",
    "SELECT a, {s} AS tag FROM t WHERE k IN ({i}, {i}, -{i}) AND x BETWEEN -{d} AND {d}",
    "SELECT * FROM t WHERE d = DATE {s} OR d = {s}::DATE",
    "SELECT k FROM t WHERE k = ? AND v < {d} OFFSET {i}",
    "SELECT sum(v) FILTER (WHERE k > {i}) FROM t GROUP BY ALL HAVING sum(v) > {i}",
    "WITH x AS (SELECT * FROM t WHERE s LIKE {s}) SELECT * FROM x WHERE k <> {i}",
    "SELECT * FROM t WHERE ts > now() - INTERVAL {s} AND k = {i}",
    "SELECT CASE WHEN k = {i} THEN {s} ELSE {s} END FROM t",
]

_ints = st.integers(min_value=0, max_value=10**18 - 1).map(str)
_decs = st.tuples(st.integers(0, 10**8), st.integers(0, 10**6)).map(lambda p: f"{p[0]}.{p[1]}")
_strs = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\\"), max_size=12).map(
    lambda s: "'" + s.replace("'", "''") + "'")


def _fill(pattern: str, draw) -> str:
    pieces = re.split(r"\{([ids])\}", pattern)  # text, kind, text, kind, ..., text
    out = [pieces[0]]
    for kind, text in zip(pieces[1::2], pieces[2::2], strict=True):
        out += (draw(_ints if kind == "i" else _decs if kind == "d" else _strs), text)
    return "".join(out)


def _full(text: str) -> stmod.Statement:
    """The analysis from DuckDB's own parse (templates bypassed)."""
    saved = stmod._templates
    stmod._templates = Templates(lambda sql: orjson.loads(stmod._parser.serialize(sql)))
    try:
        return stmod.statement.__wrapped__(text)
    finally:
        stmod._templates = saved


def _same(a: stmod.Statement, b: stmod.Statement) -> None:
    assert (a.kind, a.param_count, a.digest, a.shape, a.tables, a.cacheable, a.error, a.bound_sql) == \
        (b.kind, b.param_count, b.digest, b.shape, b.tables, b.cacheable, b.error, b.bound_sql)
    assert a.analysis == b.analysis
    assert repr(a.plain_scan) == repr(b.plain_scan)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), which=st.integers(0, len(PATTERNS) - 1))
def test_a_templated_text_is_analysed_as_its_own_parse(data, which):
    parses = []
    templates = Templates(lambda sql: parses.append(sql) or orjson.loads(stmod._parser.serialize(sql)))
    draw = data.draw
    texts = [_fill(PATTERNS[which], draw) for _ in range(4)]
    for text in texts[:2]:  # first sight, then the sentinel tree is built and checked
        parts, found = templates.tree(text)
        assert parts is not None and found is None
        full = _full(text)
        templates.learn(parts, full.kind, full.param_count, orjson.loads(stmod._parser.serialize(text)))
    assert len(parses) == 1  # the sentinel text, once
    for text in texts[2:]:
        parts, found = templates.tree(text)
        assert found is not None, text
        kind, count, tree = found
        want = orjson.loads(stmod._parser.serialize(text))
        assert _strip(tree) == _strip(want)
    # and through statement(): the same analysis as a full parse, for new texts of the template
    stmod.statement(texts[0])
    stmod.statement(texts[1])
    for _ in range(3):
        text = _fill(PATTERNS[which], draw)
        _same(stmod.statement(text), _full(text))


def _strip(o):
    if isinstance(o, list):
        return [_strip(x) for x in o]
    if isinstance(o, dict):
        return {k: _strip(v) for k, v in o.items() if k not in ("query_location", "query_location_length")}
    return o


@pytest.mark.parametrize(("sql", "template", "literals"), [
    ("SELECT 1", "SELECT \x00i\x00", [("i", "1")]),
    ("SELECT 'it''s', - 2.50", "SELECT \x00s\x00, - \x00d\x00", [("s", "it's"), ("d", "2.50")]),
    ("SELECT E'a\\nb', x'0a', $$c$$, 1e5, 0x1F, 1_000, .5, 5., k1", None, None),
    ("SELECT 1234567890123456789", None, None),  # 19 digits: kept in the template text
    ("SELECT 'a\\', 'b\\''c'", None, None),  # a backslash: DuckDB's lexer may read it as an escape
    ("SELECT a FROM t", None, None),
])
def test_split_takes_only_plain_literals(sql, template, literals):
    got = split(sql)
    if template is None:
        assert got is None
    else:
        assert got == (template, literals)


def test_a_literal_that_is_not_a_literal_text_makes_no_template():
    """USING SAMPLE keeps its size as a number, not a literal's text: never templated."""
    parses = []
    templates = Templates(lambda sql: parses.append(sql) or orjson.loads(stmod._parser.serialize(sql)))
    texts = [f"SELECT * FROM t USING SAMPLE {n} ROWS" for n in (10, 20, 30)]
    for text in texts[:2]:
        parts, found = templates.tree(text)
        assert found is None
        templates.learn(parts, "SELECT", 0, orjson.loads(stmod._parser.serialize(text)))
    parts, found = templates.tree(texts[2])
    assert parts is not None and found is None
    templates.learn(parts, "SELECT", 0, orjson.loads(stmod._parser.serialize(texts[2])))
    assert len(parses) == 1  # tried once, remembered as unusable


def test_one_off_texts_cost_no_extra_parse():
    parses = []
    templates = Templates(lambda sql: parses.append(sql) or orjson.loads(stmod._parser.serialize(sql)))
    for i in range(5):
        text = f"SELECT {i} AS c{i}"  # each its own template (the alias differs)
        parts, found = templates.tree(text)
        templates.learn(parts, "SELECT", 0, orjson.loads(stmod._parser.serialize(text)))
    assert parses == []
