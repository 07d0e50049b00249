/* Tables, Cluster and Queries pages: system.* tables and /api/v1/status through the REST API. */
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const el = MC.el;
  const REFRESH_MS = 5000;

  function quoteIdent(name) { return '"' + String(name).replace(/"/g, '""') + '"'; }

  // refresh `fn` every REFRESH_MS while its page is shown and its checkbox is on
  function poller(checkbox, fn) {
    let timer = null;
    const tick = async () => {
      timer = null;
      try { await fn(); } catch (e) { MC.notice(e.message || String(e)); }
      if ($(checkbox).checked && timer === null && !document.querySelector(`#${checkbox}`).closest("section").hidden) {
        timer = setTimeout(tick, REFRESH_MS);
      }
    };
    const stop = () => { if (timer) clearTimeout(timer); timer = null; };
    document.addEventListener("DOMContentLoaded", () => {
      $(checkbox).addEventListener("change", () => { stop(); if ($(checkbox).checked) tick(); });
    });
    return { start: () => { stop(); return tick(); }, stop };
  }

  // -- Tables --------------------------------------------------------------------------
  async function showTables(name, note = "") {
    const [tables, flushes] = await Promise.all([
      MC.sql("SELECT name, rows, buffered_rows, bytes, files, columns, time_column FROM system.tables ORDER BY name"),
      MC.sql("SELECT table_name, max(created_at) AS last_flush FROM system.files GROUP BY table_name"),
    ]);
    const last = Object.fromEntries(flushes.map((f) => [f.table_name, f.last_flush]));
    $("tables-list").replaceChildren(MC.listTable([
      { label: "Table", render: (t) => el("a", { href: "#tables/" + encodeURIComponent(t.name), text: t.name }) },
      { label: "Rows (flushed)", num: true, render: (t) => MC.fmtNum(t.rows) },
      { label: "Rows (buffered)", num: true, render: (t) => MC.fmtNum(t.buffered_rows) },
      { label: "Bytes", num: true, render: (t) => MC.fmtBytes(t.bytes) },
      { label: "Files", num: true, render: (t) => MC.fmtNum(t.files) },
      { label: "Last flush", render: (t) => MC.fmtTime(last[t.name]) || "never" },
    ], tables, tables.length + " tables"));
    $("table-detail").replaceChildren();
    if (name) await showTable(name, note);
  }

  async function showTable(name, note = "") {  // note: the last action's outcome, kept across the re-render
    const host = $("table-detail");
    const info = await MC.json("/tables/" + encodeURIComponent(name));
    const files = await MC.sql("SELECT key, rows, bytes, node_id, created_at FROM system.files WHERE table_name = ? " +
                               "ORDER BY created_at DESC LIMIT 200", [name]);
    const flushMsg = el("span", { role: "status", "aria-live": "polite", text: note });
    const flushBtn = el("button", { type: "button", class: "primary", text: "Flush now" });
    flushBtn.addEventListener("click", async () => {
      flushBtn.disabled = true;
      flushMsg.textContent = "flushing...";
      try {
        const res = await MC.json("/flush", { method: "POST", body: JSON.stringify({ table: name }),
                                              headers: { "Content-Type": "application/json" } });
        const done = `flushed ${MC.fmtNum(res.rows)} rows into ${MC.fmtNum(res.files)} files`;
        flushMsg.textContent = done;
        await showTables(name, done);  // the page is drawn anew: the outcome stays on it
      } catch (e) {
        flushMsg.textContent = "flush failed: " + e.message;
        flushBtn.disabled = false;
      }
    });
    const stats = info.stats || {};
    const sample = el("div", { class: "sample" });
    host.replaceChildren(
      el("h2", { id: "table-title", tabindex: "-1", text: "Table " + name }),
      el("div", { class: "bar" }, flushBtn, flushMsg),
      el("p", {}, `${MC.fmtNum(stats.rows_total ?? stats.rows)} rows (${MC.fmtNum(stats.buffered_rows)} buffered), ` +
                  `${MC.fmtNum(stats.files)} files, ${MC.fmtBytes(stats.bytes)}; created ${MC.fmtTime(info.created_at)}` +
                  (info.time_column ? `; time column ${info.time_column}` : "")),
      el("h3", { text: "Schema" }),
      MC.listTable([{ key: "name", label: "Column" }, { key: "type", label: "Type" },
                    { label: "Nullable", render: (c) => (c.nullable ? "yes" : "no") }], info.schema || []),
      el("h3", { text: "Sample rows" }), sample,
      el("h3", { text: "Files" }),
      MC.listTable([{ key: "key", label: "Object key", cls: "sql" }, { label: "Rows", num: true, render: (f) => MC.fmtNum(f.rows) },
                    { label: "Bytes", num: true, render: (f) => MC.fmtBytes(f.bytes) }, { key: "node_id", label: "Node" },
                    { label: "Created", render: (f) => MC.fmtTime(f.created_at) }], files));
    $("table-title").focus();
    const resp = await MC.request("/query?format=arrow", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sql: "SELECT * FROM " + quoteIdent(name) + " LIMIT 20" }) });
    const table = Arrow.tableFromIPC(new Uint8Array(await resp.arrayBuffer()));
    Grid.render(sample, table, { label: "Sample rows of " + name });
  }

  MC.register("tables", { show: (arg) => showTables(arg ? decodeURIComponent(arg) : "") });

  // -- Cluster -------------------------------------------------------------------------
  async function loadCluster() {
    const [cl, st] = await Promise.all([MC.json("/cluster"), MC.json("/status")]);
    const now = Date.now();
    const badge = (h) => el("span", { class: "badge " + (h === "ok" ? "up" : "down"), text: h });
    $("cluster-nodes").replaceChildren(MC.listTable([
      { key: "node_id", label: "Node" },
      { label: "Health", render: (n) => (n.error ? el("span", {}, badge(n.health), " ", n.error) : badge(n.health)) },
      { label: "Role", render: (n) => (n.role === "coordinator" ? "coordinator (serves this console)" : n.role) },
      { label: "Buffered rows", num: true, render: (n) => MC.fmtNum(n.buffered_rows) },
      { label: "Buffer bytes", num: true, render: (n) => MC.fmtBytes(n.buffer_bytes) },
      { label: "WAL bytes", num: true, render: (n) => MC.fmtBytes(n.wal_bytes) },
      { label: "Last heartbeat", render: (n) => n.last_seen
          ? `${MC.fmtTime(n.last_seen)} (${Math.max(0, Math.round((now - Date.parse(n.last_seen)) / 1000))} s ago)` : "" },
      { key: "version", label: "Version" },
      { key: "flight_uri", label: "Flight" },
      { label: "REST", render: (n) => (n.rest_uri ? el("a", { href: n.rest_uri, text: n.rest_uri }) : "") },
    ], cl.nodes, cl.nodes.length + " nodes"));
    const self = st.node || {};
    $("cluster-self").replaceChildren(
      MC.listTable([{ key: "k", label: "Check" }, { key: "v", label: "State" }],
                   Object.entries(st.checks || {}).map(([k, v]) => ({ k, v: String(v) }))),
      MC.listTable([{ key: "table", label: "Buffer" }, { label: "Rows", num: true, render: (b) => MC.fmtNum(b.rows) },
                    { label: "Bytes", num: true, render: (b) => MC.fmtBytes(b.bytes) },
                    { label: "Flushing rows", num: true, render: (b) => MC.fmtNum(b.flushing_rows) }],
                   Object.entries(st.buffers || {}).map(([table, b]) => Object.assign({ table }, b)), "buffers"),
      el("p", { class: "hint", text: `node ${self.node_id || ""}; storage ${st.storage || ""}; metadata ` +
                                      `${st.metadata || ""}; uptime ${Math.round(self.uptime_seconds || 0)} s` }));
    $("cluster-updated").textContent = "updated " + new Date().toLocaleTimeString();
  }

  const cluster = poller("cluster-auto", loadCluster);
  MC.register("cluster", { show: cluster.start, hide: cluster.stop });

  // -- Queries -------------------------------------------------------------------------
  async function loadQueries() {
    const rows = await MC.sql("SELECT query_id, started_at, status, kind, principal, duration_ms, rows, bytes, " +
                              "cache_hit, error_code, sql FROM system.queries ORDER BY started_at DESC LIMIT 200");
    const mine = (q) => q.sql && q.sql.includes("system.queries");  // this page's own polling
    const cols = [
      { label: "Started", render: (q) => MC.fmtTime(q.started_at) },
      { label: "Status", render: (q) => el("span", { class: "badge " + (q.status === "running" ? "run" : q.status === "finished" ? "up" : "down"), text: q.status }) },
      { key: "kind", label: "Kind" },
      { key: "principal", label: "User" },
      { label: "ms", num: true, render: (q) => (q.duration_ms === null ? "" : Number(q.duration_ms).toFixed(1)) },
      { label: "Rows", num: true, render: (q) => MC.fmtNum(q.rows) },
      { label: "Bytes", num: true, render: (q) => MC.fmtBytes(q.bytes) },
      { label: "Cache", render: (q) => (q.cache_hit ? "hit" : "") },
      { key: "error_code", label: "Error" },
      { key: "sql", label: "SQL", cls: "sql" },
      { key: "query_id", label: "Query id" },
    ];
    const running = rows.filter((q) => q.status === "running" && !mine(q));
    const stop = { label: "Action", render: (q) => {
      const b = el("button", { type: "button", "aria-label": "Cancel query " + q.query_id, text: "Cancel" });
      b.addEventListener("click", async () => {
        b.disabled = true;
        try { await MC.cancelQuery(q.query_id); } catch (e) { MC.notice("cancel failed: " + e.message); }
        await loadQueries();
      });
      return b;
    } };
    $("queries-running").replaceChildren(MC.listTable([stop, ...cols], running));
    $("queries-recent").replaceChildren(MC.listTable(cols, rows.filter((q) => q.status !== "running"), rows.length + " recent statements on this node"));
  }

  const queries = poller("queries-auto", loadQueries);
  MC.register("queries", { show: queries.start, hide: queries.stop });
  document.addEventListener("DOMContentLoaded", () => {
    $("cluster-refresh").addEventListener("click", () => loadCluster().catch((e) => MC.notice(e.message)));
    $("queries-refresh").addEventListener("click", () => loadQueries().catch((e) => MC.notice(e.message)));
  });
})();
