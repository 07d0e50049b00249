"""The web console (``GET /`` on the REST port) in a real browser.

Headless Chromium from Debian's ``chromium`` package (``make system-deps`` installs it), driven by
Playwright for Python with ``executable_path`` pointed at it (``playwright install`` is never
run). Locally a missing browser skips; in CI (CI=true) it fails. Every test saves a screenshot
of the page it drove under its tmp dir.
"""

from __future__ import annotations

import csv
import io
import os
import shutil

import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest

from clients import errors
from clients.flight import translate
from tests.fixtures.helpers import wait_until
from tests.fixtures.node import NodeProcess
from tests.fixtures.redis import server_mode_env
from tests.fixtures.services import unavailable

pytestmark = pytest.mark.timeout(180)

CHROMIUM = os.environ.get("MINIODB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# ~10^12 rows: streams for hours unless stopped
ENDLESS = "SELECT a.range AS x, b.range AS y FROM range(1000000) a, range(1000000) b"
KEY = "console-key-5d1e07"
TIMEOUT = 30_000  # ms, for the browser to show something (never a speed assertion)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install -e '.[test]')")
    if not os.path.exists(CHROMIUM):
        unavailable(f"no Chromium at {CHROMIUM} (make system-deps installs Debian's chromium)")
    with sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=CHROMIUM,
                                  args=["--no-sandbox"] if os.geteuid() == 0 else [])
        except Exception as exc:  # noqa: BLE001 - any launch failure means no browser here
            unavailable(f"Chromium at {CHROMIUM} cannot start: {exc}")
        yield b
        b.close()


@pytest.fixture
def page(browser, tmp_path):
    """A fresh tab (own storage); fails the test on an uncaught script error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    pg = context.new_page()
    problems: list[str] = []
    pg.on("pageerror", lambda exc: problems.append(str(exc)))
    pg.set_default_timeout(TIMEOUT)
    yield pg
    context.close()
    assert not problems, problems


def shot(pg, tmp_path, name: str) -> None:
    pg.screenshot(path=str(tmp_path / f"console-{name}.png"), full_page=True)


def expect(locator):
    from playwright.sync_api import expect as pw_expect

    return pw_expect(locator)


@pytest.fixture(scope="module")
def console_node(tmp_path_factory):
    # no timed flush: the 10 buffered rows wait for the "Flush now" button
    node = NodeProcess(tmp_path_factory.mktemp("console"), env={"MINIODB_BUFFER_FLUSH_INTERVAL": "3600"}).start()
    with node.client() as c:
        c.ingest("trips", pa.table({"id": list(range(1000)), "city": ["Oslo", "Rome"] * 500,
                                    "fare": [i * 0.5 for i in range(1000)]}))
        c.flush("trips")
        c.ingest("trips", pa.table({"id": list(range(1000, 1010)), "city": ["Lima"] * 10,
                                    "fare": [1.0] * 10}))  # stays in the buffer
    yield node
    node.terminate()


def run_sql(pg, sql: str) -> None:
    pg.fill("#sql", sql)
    pg.press("#sql", "Control+Enter")


def test_query_shows_rows_in_a_virtualised_grid(page, console_node, tmp_path):
    page.goto(console_node.rest + "/")
    expect(page.locator("#sql")).to_be_focused()
    run_sql(page, "SELECT range AS n, range * 2 AS doubled FROM range(100000)")
    expect(page.locator("#query-status")).to_contain_text("100,000 rows in")
    expect(page.locator("#query-stats")).to_contain_text("query id")
    grid = page.locator("#result-grid .grid")
    expect(grid).to_have_attribute("aria-label", "Query result: 100000 rows; scroll with the arrow keys")
    first = page.locator("#result-grid tbody tr").nth(0)
    expect(first.locator("td").nth(1)).to_have_text("0")
    assert page.locator("#result-grid tbody tr").count() < 200  # only the rows in view are in the page
    grid.focus()
    page.keyboard.press("Control+End")  # keyboard: to the last row
    last = page.locator('#result-grid tr[aria-rowindex="100001"]')
    expect(last.locator("td").nth(1)).to_have_text("99999")
    expect(last.locator("td").nth(2)).to_have_text("199998")
    assert page.locator("#result-grid tbody tr").count() < 200
    shot(page, tmp_path, "query")
    # history keeps the statement (localStorage), the chart draws the numeric column
    expect(page.locator("#history option").nth(1)).to_have_text("SELECT range AS n, range * 2 AS doubled FROM range(100000)")
    page.click("#tab-chart")
    expect(page.locator("#chart-area svg path")).to_have_count(1)
    expect(page.locator("#chart-area svg")).to_have_attribute("aria-label", "line chart of doubled by n, 5000 points")
    shot(page, tmp_path, "chart")


def test_the_grid_shows_each_type_as_text(page, console_node):
    page.goto(console_node.rest + "/")
    run_sql(page, "SELECT 12.34::DECIMAL(10,2) AS d, -0.05::DECIMAL(10,2) AS dn, [1, 2] AS l, "
                  "{'a': 1, 'b': 'x'} AS s, DATE '2024-01-02' AS dt, TIMESTAMPTZ '2024-01-02 03:04:05+00' AS ts, "
                  "'ab'::BLOB AS bl, INTERVAL 90 MINUTE AS iv, NULL AS n, TIME '10:00:00.25' AS t")
    expect(page.locator("#query-status")).to_contain_text("1 rows in")
    assert page.locator("#result-grid tbody td").all_inner_texts() == [
        "1", "12.34", "-0.05", "[1,2]", '{"a":1,"b":"x"}', "2024-01-02", "2024-01-02T03:04:05.000Z", "2 bytes",
        "5400 s", "NULL", "10:00:00.25"]


def test_downloads_csv_and_parquet(page, console_node, tmp_path):
    page.goto(console_node.rest + "/")
    page.fill("#sql", "SELECT id, city FROM trips WHERE id < 5 ORDER BY id")
    with page.expect_download() as dl:
        page.click("#dl-csv")
    text = (tmp_path / "r.csv")
    dl.value.save_as(text)
    assert list(csv.reader(io.StringIO(text.read_text()))) == [
        ["id", "city"], ["0", "Oslo"], ["1", "Rome"], ["2", "Oslo"], ["3", "Rome"], ["4", "Oslo"]]
    with page.expect_download() as dl:
        page.click("#dl-parquet")
    dl.value.save_as(tmp_path / "r.parquet")
    assert pq.read_table(tmp_path / "r.parquet").to_pydict() == {"id": [0, 1, 2, 3, 4],
                                                                 "city": ["Oslo", "Rome", "Oslo", "Rome", "Oslo"]}


@pytest.mark.parametrize("sql, code", [("SELEC id FROM trips", "invalid_request"),
                                       ("SELECT * FROM no_such_table", "not_found")])
def test_a_bad_query_shows_the_error_and_no_stack_trace(page, console_node, tmp_path, sql, code):
    page.goto(console_node.rest + "/")
    run_sql(page, sql)
    err = page.locator("#query-error")
    expect(err).to_be_visible()
    expect(err).to_contain_text(code + ": ")
    text = err.inner_text()
    assert "Traceback" not in text and 'File "' not in text and ".py" not in text, text
    expect(page.locator("#query-status")).to_have_text("Failed")
    expect(page.locator("#run")).to_be_enabled()
    shot(page, tmp_path, "error")


def _status_of(client, sql: str) -> str | None:
    rows = client.query("SELECT status FROM system.queries WHERE sql = ? ORDER BY started_at DESC LIMIT 1",
                        params=[sql]).to_pylist()
    return rows[0]["status"] if rows else None


def test_cancel_a_long_query(page, console_node, tmp_path):
    page.goto(console_node.rest + "/")
    page.fill("#max-rows", "")  # no row limit: the result would stream for hours
    run_sql(page, ENDLESS)
    expect(page.locator("#query-status")).to_contain_text("Receiving")  # rows are arriving
    expect(page.locator("#run")).to_be_disabled()
    page.click("#cancel")
    expect(page.locator("#query-status")).to_contain_text("Cancelled after")
    expect(page.locator("#cancel")).to_be_disabled()
    with console_node.client() as c:
        wait_until(lambda: _status_of(c, ENDLESS) == "cancelled", timeout=30, what="the node cancels the query")
        assert c.health()["status"] == "ok"
    run_sql(page, "SELECT 41 + 1 AS v")  # the console and the node carry on
    expect(page.locator("#result-grid tbody td").nth(1)).to_have_text("42")
    shot(page, tmp_path, "cancelled")


def test_queries_page_lists_and_cancels_a_running_query(page, console_node, tmp_path):
    with console_node.client() as c:
        info = c.flight_info(ENDLESS)
        stream = c._client.do_get(info.endpoints[0].ticket)
        assert stream.read_chunk().data.num_rows > 0  # streaming: running in system.queries
        page.goto(console_node.rest + "/#queries")
        row = page.locator("#queries-running tbody tr", has_text=ENDLESS)
        expect(row).to_have_count(1)
        expect(page.locator("#queries-recent")).to_contain_text("statements on this node")
        shot(page, tmp_path, "queries")
        row.get_by_role("button", name="Cancel").click()
        with pytest.raises(flight.FlightCancelledError) as exc:
            while True:
                stream.read_chunk()
        assert isinstance(translate(exc.value), errors.Cancelled)
        wait_until(lambda: _status_of(c, ENDLESS) == "cancelled", timeout=30, what="cancelled in system.queries")
        expect(page.locator("#queries-running tbody tr", has_text=ENDLESS)).to_have_count(0)
        with pytest.raises(errors.NotFound):  # not running any more
            c.cancel_query(c.query("SELECT query_id FROM system.queries WHERE sql = ? LIMIT 1",
                                   params=[ENDLESS]).column(0)[0].as_py())


def test_tables_page_browse_a_table_and_flush_it(page, console_node, tmp_path):
    page.goto(console_node.rest + "/#tables")
    row = page.locator("#tables-list tbody tr", has_text="trips")
    expect(row).to_have_count(1)
    row.get_by_role("link", name="trips").click()
    expect(page.locator("#table-title")).to_have_text("Table trips")
    detail = page.locator("#table-detail")
    expect(detail).to_contain_text("(10 buffered)")
    for column in ("id", "city", "fare"):
        expect(detail.locator("table.list").first).to_contain_text(column)
    expect(detail.locator(".sample tbody tr")).to_have_count(20)  # sample rows (LIMIT 20)
    expect(detail.locator(".sample th").nth(2)).to_contain_text("city")
    expect(detail.locator("table.list").last).to_contain_text("trips/date=")  # its files
    shot(page, tmp_path, "tables")
    page.get_by_role("button", name="Flush now").click()
    expect(detail).to_contain_text("flushed 10 rows into 1 files")
    with console_node.client() as c:
        assert c.describe("trips")["stats"]["buffered_rows"] == 0
    expect(page.locator("#tables-list tbody tr", has_text="trips")).to_contain_text("1,010")


@pytest.mark.redis
@pytest.mark.s3
def test_cluster_page_shows_two_nodes(page, tmp_path, node_factory, redis_server, redis_prefix, moto_server,
                                      s3_bucket):
    env = server_mode_env(moto_server, s3_bucket, redis_server, redis_prefix, BUFFER_FLUSH_INTERVAL="3600")
    a = node_factory(env={**env, "MINIODB_SERVER_NODE_ID": "node-a"}, name="a")
    b = node_factory(env={**env, "MINIODB_SERVER_NODE_ID": "node-b"}, name="b")
    with b.client() as cb:
        cb.ingest("events", pa.table({"k": [4, 5]}))  # buffered on B: the page asks B itself
    with a.client() as c:
        version = c.health()["version"]
        c.ingest("events", pa.table({"k": [1, 2, 3]}))
        wait_until(lambda: {n.get("node_id") for n in c.status()["nodes"]} == {"node-a", "node-b"}, timeout=30,
                   what="both nodes registered")
    page.goto(a.rest + "/#cluster")
    nodes = page.locator("#cluster-nodes")
    expect(nodes).to_contain_text("2 nodes")
    a_row = nodes.locator("tbody tr", has_text="node-a")
    b_row = nodes.locator("tbody tr", has_text="node-b")
    expect(a_row.locator("td").nth(2)).to_have_text("coordinator (serves this console)")
    expect(b_row.locator("td").nth(2)).to_have_text("peer")
    for row, buffered in ((a_row, "3"), (b_row, "2")):
        expect(row.locator("td").nth(1)).to_have_text("ok")  # health
        expect(row.locator("td").nth(3)).to_have_text(buffered)  # buffered rows
        expect(row.locator("td").nth(5)).not_to_have_text("0 B")  # WAL bytes
        expect(row.locator("td").nth(6)).to_contain_text("s ago")  # last heartbeat
        expect(row.locator("td").nth(7)).to_have_text(version)
    expect(page.locator("#cluster-self")).to_contain_text("events")  # this node's buffers
    before = page.locator("#cluster-updated").inner_text()
    expect(page.locator("#cluster-updated")).not_to_have_text(before, timeout=20_000)  # refreshes by itself
    shot(page, tmp_path, "cluster")


def test_with_auth_nothing_loads_without_a_key(page, browser, node_factory, tmp_path):
    n = node_factory(env={"MINIODB_SERVER_AUTH_ENABLED": "true", "MINIODB_SERVER_API_KEYS": KEY}, name="auth")
    with n.client(token=KEY) as c:
        c.ingest("secured", pa.table({"v": [1, 2, 3]}))
    page.goto(n.rest + "/#tables")
    dialog = page.locator("#auth-dialog")
    expect(dialog).to_be_visible()
    expect(page.get_by_role("textbox", name="API key")).to_be_focused()
    assert page.locator("#tables-list").inner_text() == ""  # nothing without a key
    shot(page, tmp_path, "auth")
    page.get_by_role("textbox", name="API key").fill("wrong-key")
    page.keyboard.press("Enter")
    expect(page.locator("#auth-error")).to_contain_text("That key was refused")
    assert page.locator("#tables-list").inner_text() == ""
    page.get_by_role("textbox", name="API key").fill(KEY)
    page.keyboard.press("Enter")
    expect(dialog).to_be_hidden()
    expect(page.locator("#tables-list")).to_contain_text("secured")
    # the key lives in this tab's session storage only, never in local storage
    assert page.evaluate("() => sessionStorage.getItem('miniodb.apiKey')") == KEY
    assert KEY not in page.evaluate("() => JSON.stringify(localStorage)")
    page.goto(n.rest + "/#query")
    run_sql(page, "SELECT sum(v) AS s FROM secured")
    expect(page.locator("#result-grid tbody td").nth(1)).to_have_text("6")
    other = page.context.new_page()  # another tab asks again
    other.goto(n.rest + "/#tables")
    expect(other.locator("#auth-dialog")).to_be_visible()
    assert other.locator("#tables-list").inner_text() == ""
    other.close()


def test_console_assets_and_the_cancel_route_over_http(console_node):
    import httpx

    base = console_node.rest
    page = httpx.get(base + "/", timeout=30)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for src in ("/console/console.js", "/console/query.js", "/console/pages.js", "/console/console.css",
                "/console/vendor/Arrow.es2015.min.js", "/console/vendor/apache-arrow-LICENSE.txt"):
        assert f'"{src}"' in page.text, src  # the page loads each from here, none from a CDN
        r = httpx.get(base + src, timeout=30)
        assert r.status_code == 200 and r.content, src
    assert "javascript" in httpx.get(base + "/console/query.js", timeout=30).headers["content-type"]
    for missing in ("/console/nope.js", "/console/../app.py", "/console/vendor/../../console.py"):
        r = httpx.get(base + missing, timeout=30)
        assert r.status_code == 404 and r.json()["code"] == "not_found", missing
    bad = httpx.post(base + "/api/v1/queries/no%20such/cancel", timeout=30)
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_request"
    gone = httpx.post(base + "/api/v1/queries/0123456789abcdef/cancel", timeout=30)
    assert gone.status_code == 404 and gone.json() == {"ok": False, "code": "not_found", "status": 404,
                                                       "error": gone.json()["error"]}
    assert "Traceback" not in gone.text
