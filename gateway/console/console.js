/* MinIODB console: the shell (API calls, API key, pages) and shared helpers. No framework. */
"use strict";

const MC = (() => {
  const KEY = "miniodb.apiKey";  // sessionStorage only: this tab, forgotten when it closes
  const pages = {};  // name -> {show(arg), hide()}
  let current = null;
  let keyWaiters = null;

  class ApiError extends Error {
    constructor(status, code, message) { super(message); this.status = status; this.code = code; }
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
    }
    return node;
  }

  function headers(extra) {
    const h = Object.assign({}, extra || {});
    const key = sessionStorage.getItem(KEY);
    if (key) h["Authorization"] = "Bearer " + key;
    return h;
  }

  // Ask for a key once per tab (every call waiting on it resumes when it is given).
  function askKey(message) {
    if (!keyWaiters) {
      keyWaiters = [];
      const dlg = document.getElementById("auth-dialog");
      const err = document.getElementById("auth-error");
      err.hidden = !message;
      err.textContent = message || "";
      if (!dlg.open) dlg.showModal();
      document.getElementById("api-key").focus();
    }
    return new Promise((resolve) => keyWaiters.push(resolve));
  }

  function keyGiven(key) {
    sessionStorage.setItem(KEY, key);
    document.getElementById("forget-key").hidden = false;
    const waiters = keyWaiters || [];
    keyWaiters = null;
    waiters.forEach((w) => w());
  }

  async function errorOf(resp) {
    let body = null;
    try { body = await resp.json(); } catch (e) { body = null; }
    if (body && typeof body.error === "string") return new ApiError(resp.status, body.code || "", body.error);
    return new ApiError(resp.status, "http_" + resp.status, resp.status + " " + resp.statusText);
  }

  // fetch an /api/v1 path; 401 asks for a key and retries; other errors throw ApiError (message only)
  async function request(path, init) {
    init = init || {};
    for (;;) {
      const resp = await fetch("/api/v1" + path, Object.assign({}, init, { headers: headers(init.headers) }));
      if (resp.status === 401) {
        const err = await errorOf(resp);
        const had = sessionStorage.getItem(KEY);
        sessionStorage.removeItem(KEY);
        await askKey(had ? "That key was refused: " + err.message : "");
        continue;
      }
      if (!resp.ok) throw await errorOf(resp);
      return resp;
    }
  }

  async function json(path, init) {
    return (await request(path, init)).json();
  }

  // a small SQL query answered as JSON rows: [{col: value}]
  async function sql(text, params) {
    const body = { sql: text };
    if (params) body.params = params;
    const res = await json("/query", { method: "POST", body: JSON.stringify(body),
                                       headers: { "Content-Type": "application/json" } });
    const names = res.columns.map((c) => c.name);
    return res.rows.map((r) => Object.fromEntries(names.map((n, i) => [n, r[i]])));
  }

  async function cancelQuery(id) {
    return json("/queries/" + encodeURIComponent(id) + "/cancel", { method: "POST" });
  }

  function notice(message) {
    const n = document.getElementById("notice");
    n.textContent = message || "";
    n.hidden = !message;
  }

  function fmtBytes(n) {
    if (n === null || n === undefined) return "";
    n = Number(n);
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : String(n)) + " " + units[i];
  }

  function fmtNum(n) {
    return n === null || n === undefined ? "" : Number(n).toLocaleString("en-US");
  }

  function fmtTime(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return isNaN(d) ? String(iso) : d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  }

  // a plain (small) table: columns [{key, label, num?, cls?, render?}]
  function listTable(columns, rows, caption) {
    if (!rows.length) return el("p", { class: "hint", text: "none" });
    return el("table", { class: "list" },
      caption ? el("caption", { class: "hint", text: caption }) : null,
      el("thead", {}, el("tr", {}, columns.map((c) => el("th", { scope: "col", text: c.label })))),
      el("tbody", {}, rows.map((r) => el("tr", {}, columns.map((c) => {
        const v = c.render ? c.render(r) : r[c.key];
        return el("td", { class: (c.num ? "num " : "") + (c.cls || "") }, v instanceof Node ? v : (v ?? ""));
      })))));
  }

  function register(name, page) { pages[name] = page; }

  function route() {
    const hash = decodeURIComponent(location.hash.replace(/^#/, "")) || "query";
    const [name, ...rest] = hash.split("/");
    const page = pages[name] ? name : "query";
    if (current && current !== page && pages[current].hide) pages[current].hide();
    current = page;
    notice("");
    for (const s of document.querySelectorAll("main > section")) s.hidden = s.dataset.page !== page;
    for (const a of document.querySelectorAll("header nav a")) {
      if (a.dataset.page === page) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    }
    document.title = "MinIODB console: " + page;
    Promise.resolve(pages[page].show(rest.join("/"))).catch((e) => notice(e.message || String(e)));
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.getElementById("auth-form").addEventListener("submit", (ev) => {
      const input = document.getElementById("api-key");
      const key = input.value.trim();
      if (!key) { ev.preventDefault(); return; }
      input.value = "";
      keyGiven(key);
    });
    document.getElementById("auth-dialog").addEventListener("cancel", (ev) => ev.preventDefault());
    const forget = document.getElementById("forget-key");
    forget.hidden = !sessionStorage.getItem(KEY);
    forget.addEventListener("click", () => { sessionStorage.removeItem(KEY); forget.hidden = true; });
    window.addEventListener("hashchange", route);
    setTimeout(route, 0);  // after every page script registered itself
  });

  return { el, request, json, sql, cancelQuery, headers, notice, listTable, register, fmtBytes, fmtNum, fmtTime, ApiError };
})();
