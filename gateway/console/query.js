/* Query page: editor + history, Run/Cancel, Arrow results in a virtualised grid, chart, downloads. */
"use strict";

const Grid = (() => {
  const ROW_H = 26;      // px, fixed (CSS .grid td height)
  const OVERSCAN = 10;   // rows rendered above and below the visible window

  function decimalText(v, scale) {
    let s = Arrow.util.bigNumToString(v);
    if (!scale) return s;
    const neg = s.startsWith("-");
    if (neg) s = s.slice(1);
    s = s.padStart(scale + 1, "0");
    return (neg ? "-" : "") + s.slice(0, -scale) + "." + s.slice(-scale);
  }

  function bigintSafe(key, value) { return typeof value === "bigint" ? value.toString() : value; }

  // one cell's text: what the JSON format of /api/v1/query would show
  function formatter(type) {
    const D = Arrow.DataType;
    if (D.isTimestamp(type)) return (v) => new Date(v).toISOString();
    if (D.isDate(type)) return (v) => new Date(v).toISOString().slice(0, 10);
    if (D.isDecimal(type)) return (v) => { try { return decimalText(v, type.scale); } catch (e) { return String(v); } };
    if (D.isBinary(type) || D.isFixedSizeBinary(type)) return (v) => v.length + " bytes";
    const perSecond = [1, 1e3, 1e6, 1e9][type.unit];  // Time and Duration values count in their unit
    if (D.isDuration(type)) return (v) => Number(v) / perSecond + " s";
    if (D.isTime(type)) {
      return (v) => {
        const secs = Number(v) / perSecond;
        const hms = new Date(Math.floor(secs) * 1000).toISOString().slice(11, 19);
        const frac = secs % 1 ? (secs % 1).toFixed(6).slice(1).replace(/0+$/, "") : "";
        return hms + frac;
      };
    }
    return (v) => {
      if (typeof v === "bigint") return v.toString();
      if (v !== null && typeof v === "object") {
        const j = typeof v.toJSON === "function" ? v.toJSON() : v;
        return JSON.stringify(j, bigintSafe);
      }
      return String(v);
    };
  }

  // Render `table` (an Arrow Table) into `host`: only the rows in view are in the DOM.
  function render(host, table, opts) {
    opts = opts || {};
    host.replaceChildren();
    const fields = table.schema.fields;
    const cols = fields.map((f, i) => ({ name: f.name, type: f.type, vec: table.getChildAt(i), fmt: formatter(f.type) }));
    const total = table.numRows;
    const box = MC.el("div", { class: "grid", tabindex: "0", role: "region",
                               "aria-label": (opts.label || "Result") + ": " + total + " rows; scroll with the arrow keys" });
    const tbl = MC.el("table", { "aria-rowcount": String(total + 1), "aria-colcount": String(cols.length + 1) });
    const colgroup = MC.el("colgroup", {}, MC.el("col", { width: "70" }), cols.map(() => MC.el("col", { width: "170" })));
    const head = MC.el("thead", {}, MC.el("tr", { "aria-rowindex": "1" },
      MC.el("th", { class: "rn", scope: "col", text: "#" }),
      cols.map((c) => MC.el("th", { scope: "col", title: c.name + " " + c.type }, c.name, " ", MC.el("small", { text: String(c.type) })))));
    const body = MC.el("tbody");
    tbl.append(colgroup, head, body);
    box.append(tbl);
    host.append(box);
    let first = -1, last = -1;

    function pad(px) {
      const td = MC.el("td", { colspan: String(cols.length + 1) });
      td.style.height = px + "px";  // CSSOM, allowed by the page's style-src policy
      return MC.el("tr", { class: "pad", "aria-hidden": "true" }, td);
    }

    function paint() {
      const view = box.clientHeight || 400;
      const top = Math.max(0, Math.floor(box.scrollTop / ROW_H) - OVERSCAN);
      const end = Math.min(total, Math.ceil((box.scrollTop + view) / ROW_H) + OVERSCAN);
      if (top === first && end === last) return;
      first = top; last = end;
      const rows = [];
      if (top > 0) rows.push(pad(top * ROW_H));
      for (let r = top; r < end; r++) {
        const tr = MC.el("tr", { "aria-rowindex": String(r + 2) }, MC.el("td", { class: "rn", text: String(r + 1) }));
        for (const c of cols) {
          const v = c.vec ? c.vec.get(r) : null;
          const text = v === null || v === undefined ? "NULL" : c.fmt(v);
          tr.append(MC.el("td", { class: v === null || v === undefined ? "null" : null, title: text.length > 20 ? text : null, text }));
        }
        rows.push(tr);
      }
      if (end < total) rows.push(pad((total - end) * ROW_H));
      body.replaceChildren(...rows);
    }

    box.addEventListener("scroll", () => requestAnimationFrame(paint), { passive: true });
    box.addEventListener("keydown", (ev) => {
      const step = { ArrowDown: ROW_H, ArrowUp: -ROW_H, PageDown: box.clientHeight, PageUp: -box.clientHeight }[ev.key];
      if (step) { box.scrollTop += step; ev.preventDefault(); }
      if (ev.key === "Home" && ev.ctrlKey) { box.scrollTop = 0; ev.preventDefault(); }
      if (ev.key === "End" && ev.ctrlKey) { box.scrollTop = box.scrollHeight; ev.preventDefault(); }
    });
    paint();
    return { repaint: () => { first = last = -1; paint(); } };
  }

  return { render, formatter };
})();

const Chart = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const W = 900, H = 320, M = { l: 70, r: 16, t: 14, b: 40 };
  const MAX_POINTS = 5000, MAX_BARS = 200;

  function svg(tag, attrs) {
    const n = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, v);
    return n;
  }

  function isNumeric(type) {
    const D = Arrow.DataType;
    return D.isInt(type) || D.isFloat(type) || D.isDecimal(type);
  }

  function num(v, type) {
    if (v === null || v === undefined) return NaN;
    if (Arrow.DataType.isDecimal(type)) return Number(Grid.formatter(type)(v));
    return Number(v);
  }

  // draw Y over X (line: X numeric or time; bar: X as labels), at most the first rows
  function draw(host, table, kind, xi, yi) {
    host.replaceChildren();
    if (!table || xi < 0 || yi < 0) { host.append(MC.el("p", { class: "hint", text: "Pick a numeric Y column." })); return; }
    const xf = table.schema.fields[xi], yf = table.schema.fields[yi];
    const xv = table.getChildAt(xi), yv = table.getChildAt(yi);
    const n = Math.min(table.numRows, kind === "bar" ? MAX_BARS : MAX_POINTS);
    const xfmt = Grid.formatter(xf.type);
    const xnum = isNumeric(xf.type) || Arrow.DataType.isTimestamp(xf.type) || Arrow.DataType.isDate(xf.type);
    const pts = [];
    for (let i = 0; i < n; i++) {
      const y = num(yv.get(i), yf.type);
      const raw = xv.get(i);
      const x = kind === "line" && xnum ? num(raw, xf.type) : i;
      if (Number.isFinite(y) && Number.isFinite(x)) pts.push({ x, y, label: raw === null ? "NULL" : xfmt(raw) });
    }
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img",
                              "aria-label": `${kind} chart of ${yf.name} by ${xf.name}, ${pts.length} points` });
    const title = svg("title"); title.textContent = `${yf.name} by ${xf.name}`; root.append(title);
    host.append(root);
    if (!pts.length) return;
    const ymin = Math.min(0, ...pts.map((p) => p.y)), ymax = Math.max(...pts.map((p) => p.y), ymin + 1e-9);
    const xmin = Math.min(...pts.map((p) => p.x)), xmax = Math.max(...pts.map((p) => p.x), xmin + 1e-9);
    const pw = W - M.l - M.r, ph = H - M.t - M.b;
    const sx = (x) => M.l + ((x - xmin) / (xmax - xmin || 1)) * pw;
    const sy = (y) => M.t + ph - ((y - ymin) / (ymax - ymin || 1)) * ph;
    root.append(svg("line", { x1: M.l, y1: M.t + ph, x2: W - M.r, y2: M.t + ph, stroke: "#4a5866" }));
    root.append(svg("line", { x1: M.l, y1: M.t, x2: M.l, y2: M.t + ph, stroke: "#4a5866" }));
    for (const t of [ymin, (ymin + ymax) / 2, ymax]) {
      const lab = svg("text", { x: M.l - 6, y: sy(t) + 4, "text-anchor": "end", "font-size": "11", fill: "#17202a" });
      lab.textContent = Number(t.toPrecision(4)).toLocaleString("en-US");
      root.append(lab);
    }
    if (kind === "bar") {
      const bw = Math.max(1, pw / pts.length - 2);
      pts.forEach((p, i) => {
        const x = M.l + (i * pw) / pts.length + 1;
        const r = svg("rect", { x, y: Math.min(sy(p.y), sy(0)), width: bw, height: Math.abs(sy(0) - sy(p.y)), fill: "#0b5cad" });
        const tt = svg("title"); tt.textContent = `${p.label}: ${p.y}`; r.append(tt);
        root.append(r);
      });
    } else {
      const d = pts.map((p, i) => (i ? "L" : "M") + sx(p.x).toFixed(1) + " " + sy(p.y).toFixed(1)).join(" ");
      root.append(svg("path", { d, fill: "none", stroke: "#0b5cad", "stroke-width": "2" }));
    }
    const first = svg("text", { x: M.l, y: H - 12, "font-size": "11", fill: "#17202a" });
    first.textContent = pts[0].label;
    const lastL = svg("text", { x: W - M.r, y: H - 12, "font-size": "11", fill: "#17202a", "text-anchor": "end" });
    lastL.textContent = pts[pts.length - 1].label;
    root.append(first, lastL);
  }

  return { draw, isNumeric };
})();

(() => {
  const HISTORY = "miniodb.history", HISTORY_MAX = 50;
  let controller = null;  // AbortController of the running query
  let runningId = null;   // its query id (x-miniodb-query-id), once the node answered
  let result = null;      // the last Arrow table
  const $ = (id) => document.getElementById(id);

  function history() {
    try { return JSON.parse(localStorage.getItem(HISTORY) || "[]"); } catch (e) { return []; }
  }

  function remember(sql) {
    const h = [sql, ...history().filter((s) => s !== sql)].slice(0, HISTORY_MAX);
    localStorage.setItem(HISTORY, JSON.stringify(h));
    fillHistory();
  }

  function fillHistory() {
    const sel = $("history");
    sel.replaceChildren(MC.el("option", { value: "", text: "(recent queries)" }),
      ...history().map((s, i) => MC.el("option", { value: String(i), text: s.replace(/\s+/g, " ").slice(0, 80) })));
  }

  function setRunning(on) {
    $("run").disabled = on;
    $("cancel").disabled = !on;
  }

  function showError(message) {
    const box = $("query-error");
    box.textContent = message || "";
    box.hidden = !message;
  }

  function showStats(resp) {
    const dl = $("query-stats");
    dl.replaceChildren();
    for (const [k, v] of resp.headers.entries()) {
      if (!k.startsWith("x-miniodb-")) continue;
      dl.append(MC.el("div", {}, MC.el("dt", { text: k.slice(10).replace(/-/g, " ") }), MC.el("dd", { text: v })));
    }
  }

  function fillChartColumns(table) {
    const fields = table ? table.schema.fields : [];
    const opts = (pred) => fields.map((f, i) => pred(f) ? MC.el("option", { value: String(i), text: f.name }) : null);
    $("chart-x").replaceChildren(...opts(() => true));
    $("chart-y").replaceChildren(...opts((f) => Chart.isNumeric(f.type)));
    const y = fields.findIndex((f, i) => i > 0 && Chart.isNumeric(f.type));
    if (y > 0) $("chart-y").value = String(y);
  }

  function drawChart() {
    Chart.draw($("chart-area"), result, $("chart-kind").value, Number($("chart-x").value || -1),
               $("chart-y").value === "" ? -1 : Number($("chart-y").value));
  }

  function body() {
    const sql = $("sql").value.trim();
    const limit = Number($("max-rows").value);
    const b = { sql };
    if (Number.isInteger(limit) && limit > 0) b.limit = limit;
    return b;
  }

  // the whole body, reporting progress (a long result shows it is arriving; Cancel stops it)
  async function readAll(resp, progress) {
    const reader = resp.body.getReader();
    const chunks = [];
    let size = 0, shown = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.length;
      if (size - shown > 1 << 20) { shown = size; progress(size); }
    }
    const out = new Uint8Array(size);
    let at = 0;
    for (const c of chunks) { out.set(c, at); at += c.length; }
    return out;
  }

  async function run() {
    const b = body();
    if (!b.sql || controller) return;
    remember(b.sql);
    showError("");
    $("query-stats").replaceChildren();
    $("query-status").textContent = "Running...";
    setRunning(true);
    controller = new AbortController();
    const started = performance.now();
    try {
      const resp = await MC.request("/query?format=arrow", { method: "POST", body: JSON.stringify(b), signal: controller.signal,
                                                            headers: { "Content-Type": "application/json" } });
      showStats(resp);
      runningId = resp.headers.get("x-miniodb-query-id");
      const bytes = await readAll(resp, (n) => { $("query-status").textContent = `Receiving... ${MC.fmtBytes(n)}`; });
      result = Arrow.tableFromIPC(bytes);
      const ms = performance.now() - started;
      $("query-status").textContent = `${MC.fmtNum(result.numRows)} rows in ${(ms / 1000).toFixed(3)} s (${MC.fmtBytes(bytes.length)} Arrow)` +
        (b.limit && result.numRows >= b.limit ? `; stopped at max rows ${MC.fmtNum(b.limit)}` : "");
      Grid.render($("result-grid"), result, { label: "Query result" });
      fillChartColumns(result);
      if (!$("result-chart").hidden) drawChart();
    } catch (e) {
      if (e.name === "AbortError") {
        $("query-status").textContent = `Cancelled after ${((performance.now() - started) / 1000).toFixed(3)} s`;
      } else {
        $("query-status").textContent = "Failed";
        showError(e instanceof MC.ApiError ? `${e.code || "error"}: ${e.message}` : String(e.message || e));
      }
    } finally {
      controller = null;
      runningId = null;
      setRunning(false);
    }
  }

  // stop the node's query by id (when the node has answered already), then drop the fetch: the
  // gateway closes the Flight stream of an aborted request too, so the node stops either way
  function cancel() {
    if (!controller) return;
    if (runningId) MC.cancelQuery(runningId).catch(() => {});
    controller.abort();
  }

  async function download(fmt) {
    const b = body();
    if (!b.sql) return;
    showError("");
    try {
      const resp = await MC.request("/query?format=" + fmt, { method: "POST", body: JSON.stringify(b),
                                                             headers: { "Content-Type": "application/json" } });
      const url = URL.createObjectURL(await resp.blob());
      const a = MC.el("a", { href: url, download: "result." + fmt });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (e) {
      showError(e instanceof MC.ApiError ? `${e.code || "error"}: ${e.message}` : String(e.message || e));
    }
  }

  function selectTab(which) {
    const grid = which === "grid";
    $("tab-grid").setAttribute("aria-selected", String(grid));
    $("tab-chart").setAttribute("aria-selected", String(!grid));
    $("tab-grid").tabIndex = grid ? 0 : -1;
    $("tab-chart").tabIndex = grid ? -1 : 0;
    $("result-grid").hidden = !grid;
    $("result-chart").hidden = grid;
    if (!grid) drawChart();
  }

  document.addEventListener("DOMContentLoaded", () => {
    fillHistory();
    $("query-form").addEventListener("submit", (ev) => { ev.preventDefault(); run(); });
    $("sql").addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); run(); }
    });
    $("cancel").addEventListener("click", cancel);
    document.addEventListener("keydown", (ev) => { if (ev.key === "Escape" && controller) cancel(); });
    $("history").addEventListener("change", (ev) => {
      const h = history()[Number(ev.target.value)];
      if (ev.target.value !== "" && h !== undefined) { $("sql").value = h; $("sql").focus(); }
    });
    $("dl-csv").addEventListener("click", () => download("csv"));
    $("dl-parquet").addEventListener("click", () => download("parquet"));
    $("tab-grid").addEventListener("click", () => selectTab("grid"));
    $("tab-chart").addEventListener("click", () => selectTab("chart"));
    for (const id of ["tab-grid", "tab-chart"]) {
      $(id).addEventListener("keydown", (ev) => {
        if (ev.key === "ArrowRight" || ev.key === "ArrowLeft") {
          const next = id === "tab-grid" ? "chart" : "grid";
          selectTab(next); $("tab-" + next).focus();
        }
      });
    }
    for (const id of ["chart-kind", "chart-x", "chart-y"]) $(id).addEventListener("change", drawChart);
    if (!$("sql").value) $("sql").value = history()[0] || "SELECT * FROM system.tables";
  });

  MC.register("query", { show: () => $("sql").focus() });
})();
