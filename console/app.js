// The Assay console: one page over the public REST API (/api/v1), no build step, no
// dependencies. The bearer token lives in this module's memory only (never in storage): a
// reload signs out. Every value from the API reaches the page as text (textContent), never
// as HTML.

const state = { token: null, user: null, role: null };
const ROLE_RANK = { reader: 0, engineer: 1, admin: 2 };
const main = document.getElementById("main");

/** An element: h("a", {href: "#/"}, "text", child, ...). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "style") Object.assign(el.style, v); // CSSOM: allowed by the CSP
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function say(text) {
  const box = document.getElementById("status");
  box.textContent = text;
  if (text) setTimeout(() => { if (box.textContent === text) box.textContent = ""; }, 4000);
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

/** Calls the REST API; JSON in and out unless `accept` asks for another format (a Blob). */
async function api(path, { method = "GET", body, accept } = {}) {
  const headers = {};
  if (state.token) headers["Authorization"] = `Bearer ${state.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (accept) headers["Accept"] = accept;
  const res = await fetch(`/api/v1${path}`, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 401 && state.token) {
    signOut("Your session ended: sign in again.");
    throw new ApiError(401, "signed out");
  }
  if (!res.ok) {
    let message = `${res.status} ${res.statusText}`;
    try { const e = await res.json(); if (e.message) message = e.message; } catch (_) { /* not JSON */ }
    throw new ApiError(res.status, message);
  }
  if (accept && accept !== "application/json") return res.blob();
  return res.status === 204 ? null : res.json();
}

function atLeast(role) { return ROLE_RANK[state.role] >= ROLE_RANK[role]; }

function fmtBytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0; let v = Number(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function fmtTime(t) { return t ? new Date(t).toLocaleString() : ""; }

function cell(v) {
  if (v === null || v === undefined) return h("td", { class: "muted" }, "null");
  if (typeof v === "number") return h("td", { class: "num" }, String(v));
  if (typeof v === "object") return h("td", {}, JSON.stringify(v));
  return h("td", {}, String(v));
}

/** A table of rows (objects) with the given columns. */
function grid(columns, rows, caption) {
  return h("div", { class: "scroll" }, h("table", {},
    caption ? h("caption", { class: "muted" }, caption) : null,
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, columns.map((c) => cell(r[c])))))));
}

function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/** A Chart.js chart (console/vendor/, loaded by index.html as `window.Chart`) on a canvas. */
function chart(kind, labels, datasets, label) {
  const canvas = h("canvas", { role: "img", "aria-label": label });
  const box = h("div", { class: "chart" }, canvas);
  // Drawn once the canvas is in the page.
  requestAnimationFrame(() => new window.Chart(canvas, {
    type: kind,
    data: { labels, datasets },
    options: { responsive: true, maintainAspectRatio: false, animation: false,
      plugins: { legend: { position: "bottom" } } },
  }));
  return box;
}

function page(title, ...content) {
  main.replaceChildren(h("h1", {}, title), ...content.flat().filter((c) => c !== null && c !== undefined && c !== false));
  document.title = `${title} · Assay`;
  main.focus();
}

function failure(e) {
  return h("p", { class: "error", role: "alert" }, e.message || String(e));
}

// ---- sign-in ---------------------------------------------------------------------------

function signOut(message) {
  state.token = null; state.user = null; state.role = null;
  renderChrome();
  location.hash = "#/signin";
  if (message) say(message);
}

function renderChrome() {
  const nav = document.getElementById("nav");
  nav.hidden = !state.token;
  for (const a of nav.querySelectorAll("a[data-role]")) a.hidden = !state.token || !atLeast(a.dataset.role);
  const who = document.getElementById("who");
  who.replaceChildren();
  if (state.token) {
    who.append(h("span", {}, `${state.user} (${state.role})`),
      h("button", { type: "button", onclick: () => signOut("Signed out.") }, "Sign out"));
  }
  const current = location.hash.split("/")[1] || "";
  for (const a of nav.querySelectorAll("a")) {
    if (a.getAttribute("href") === `#/${current}`) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

function signIn() {
  const user = h("input", { name: "username", autocomplete: "username", required: true });
  const pass = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
  const out = h("p", { "aria-live": "polite" });
  const form = h("form", { class: "card signin", "aria-label": "Sign in" },
    h("label", {}, "User name", user),
    h("label", {}, "Password", pass),
    h("div", { class: "row" },
      h("button", { type: "submit" }, "Sign in"),
      h("button", { type: "button", class: "secondary", onclick: signUp }, "Sign up")),
    out);
  async function signUp() {
    out.replaceChildren();
    try {
      const account = await api("/signup", { method: "POST", body: { username: user.value, password: pass.value } });
      out.replaceChildren(account.is_active
        ? "Account created: sign in."
        : "Account created: an admin must activate it before you can sign in.");
    } catch (e) { out.replaceChildren(failure(e)); }
  }
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    out.replaceChildren();
    try {
      const login = await api("/login", { method: "POST", body: { username: user.value, password: pass.value } });
      state.token = login.token; state.user = login.user; state.role = login.role;
      renderChrome();
      location.hash = "#/catalog";
    } catch (e) { out.replaceChildren(failure(e)); }
  });
  main.replaceChildren(form);
  document.title = "Sign in · Assay";
  user.focus();
}

// ---- catalog ---------------------------------------------------------------------------

async function catalog() {
  page("Catalog", h("p", { class: "muted" }, "Loading…"));
  const search = h("input", { type: "search", name: "q", placeholder: "Filter tables", "aria-label": "Filter tables" });
  const body = h("div", { class: "layers" });
  let tables = [];
  const draw = () => {
    const q = search.value.toLowerCase();
    const byLayer = new Map();
    for (const t of tables.filter((t) => t.table.toLowerCase().includes(q))) {
      if (!byLayer.has(t.layer)) byLayer.set(t.layer, []);
      byLayer.get(t.layer).push(t);
    }
    body.replaceChildren(...[...byLayer].map(([layer, ts]) => h("section", { class: "card", "aria-label": `Layer ${layer}` },
      h("h2", {}, layer),
      h("table", {},
        h("thead", {}, h("tr", {}, ["table", "rows", "size", "version"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, ts.map((t) => h("tr", {},
          h("td", {}, h("a", { href: `#/table/${t.table}` }, t.name)),
          cell(t.rows), h("td", { class: "num" }, fmtBytes(t.size_bytes)), cell(t.version))))))));
    if (!byLayer.size) body.replaceChildren(h("p", { class: "muted" }, "No tables."));
  };
  search.addEventListener("input", draw);
  try {
    tables = (await api("/catalog")).tables;
    page("Catalog", h("div", { class: "row" }, search), h("p"), body);
    draw();
  } catch (e) { page("Catalog", failure(e)); }
}

// ---- one table -------------------------------------------------------------------------

const OPS = [["", "="], ["ne", "≠"], ["gt", ">"], ["gte", "≥"], ["lt", "<"], ["lte", "≤"], ["like", "like"], ["in", "in"]];

async function table(name) {
  page(name, h("p", { class: "muted" }, "Loading…"));
  let detail;
  try { detail = await api(`/tables/${encodeURIComponent(name)}`); } catch (e) { page(name, failure(e)); return; }
  const cols = detail.columns.map((c) => c.name);
  const preview = h("div");
  const filters = h("div", { class: "filters" });
  const order = h("select", { name: "order_by", "aria-label": "Sort by" },
    h("option", { value: "" }, "(table order)"),
    cols.flatMap((c) => [h("option", { value: c }, `${c} ↑`), h("option", { value: `-${c}` }, `${c} ↓`)]));
  const limit = h("select", { name: "limit", "aria-label": "Rows per page" }, [20, 100, 500].map((n) => h("option", { value: n }, `${n} rows`)));
  let offset = 0;

  const addFilter = () => {
    const col = h("select", { "aria-label": "Filter column" }, cols.map((c) => h("option", { value: c }, c)));
    const op = h("select", { "aria-label": "Filter operator" }, OPS.map(([v, t]) => h("option", { value: v }, t)));
    const val = h("input", { "aria-label": "Filter value", placeholder: "value" });
    const line = h("div", { class: "row filter" }, col, op, val,
      h("button", { type: "button", class: "secondary", "aria-label": "Remove filter", onclick: () => line.remove() }, "✕"));
    filters.append(line);
    col.focus();
  };

  const query = () => {
    const p = new URLSearchParams();
    for (const line of filters.querySelectorAll(".filter")) {
      const [col, op, val] = line.querySelectorAll("select, input");
      if (val.value === "") continue;
      p.append(op.value ? `${col.value}[${op.value}]` : col.value, val.value);
    }
    if (order.value) p.set("order_by", order.value);
    return p;
  };

  const load = async () => {
    const p = query();
    p.set("limit", limit.value);
    p.set("offset", String(offset));
    preview.replaceChildren(h("p", { class: "muted" }, "Loading…"));
    try {
      const page_ = await api(`/tables/${encodeURIComponent(name)}/rows?${p}`);
      const n = Number(limit.value);
      preview.replaceChildren(
        grid(cols, page_.rows, `Rows ${offset + 1}–${offset + page_.count} (version ${page_.version})`),
        h("div", { class: "row" },
          h("button", { type: "button", class: "secondary", disabled: offset === 0, onclick: () => { offset = Math.max(0, offset - n); load(); } }, "Previous"),
          h("button", { type: "button", class: "secondary", disabled: page_.count < n, onclick: () => { offset += n; load(); } }, "Next")));
    } catch (e) { preview.replaceChildren(failure(e)); }
  };

  const fetchAs = async (accept, ext) => {
    const p = query();
    p.set("limit", "10000");
    try { download(await api(`/tables/${encodeURIComponent(name)}/rows?${p}`, { accept }), `${name}.${ext}`); } catch (e) { say(e.message); }
  };

  const apply = (ev) => { ev.preventDefault(); offset = 0; load(); };
  page(name,
    h("p", { class: "muted" },
      `${detail.layer} · version ${detail.version} · ${detail.rows ?? "?"} rows · ${fmtBytes(detail.size_bytes)} in ${detail.files} files`,
      detail.partition_columns.length ? ` · partitioned by ${detail.partition_columns.join(", ")}` : ""),
    h("h2", {}, "Data"),
    h("form", { class: "card", "aria-label": "Filter rows", onsubmit: apply },
      filters,
      h("div", { class: "row" },
        h("button", { type: "button", class: "secondary", onclick: addFilter }, "Add filter"),
        h("label", {}, "Sort", order), h("label", {}, "Page", limit),
        h("button", { type: "submit" }, "Apply"),
        h("button", { type: "button", class: "secondary", onclick: () => fetchAs("text/csv", "csv") }, "Download CSV"),
        h("button", { type: "button", class: "secondary", onclick: () => fetchAs("application/vnd.apache.parquet", "parquet") }, "Download Parquet"))),
    preview,
    h("h2", {}, "Schema"),
    grid(["name", "type", "nullable"], detail.columns),
    h("h2", {}, "History"),
    grid(["version", "timestamp", "operation", "rows_added", "files_added", "files_removed", "data_change"], detail.history));
  load();
}

// ---- SQL -------------------------------------------------------------------------------

let lastSql = "SELECT * FROM gold.daily_revenue ORDER BY order_date";

function sql() {
  const text = h("textarea", { name: "sql", spellcheck: "false" });
  text.value = lastSql;
  const out = h("div");
  let result = null;
  const run = async (ev) => {
    ev.preventDefault();
    lastSql = text.value;
    out.replaceChildren(h("p", { class: "muted" }, "Running…"));
    try {
      result = await api("/query", { method: "POST", body: { sql: text.value, limit: 10000 } });
      const names = result.columns.map((c) => c.name);
      const plot = h("div");
      const kind = h("select", { "aria-label": "Chart type" }, h("option", { value: "line" }, "line"), h("option", { value: "bar" }, "bar"));
      const x = h("select", { "aria-label": "X axis" }, names.map((n) => h("option", { value: n }, n)));
      const y = h("select", { "aria-label": "Y axis", multiple: true, size: Math.min(names.length, 4) },
        names.map((n, i) => h("option", { value: n, selected: i === names.length - 1 && names.length > 1 }, n)));
      const draw = () => {
        const ys = [...y.selectedOptions].map((o) => o.value);
        plot.replaceChildren(ys.length ? chart(kind.value, result.rows.map((r) => r[x.value]),
          ys.map((c) => ({ label: c, data: result.rows.map((r) => Number(r[c])) })),
          `${kind.value} chart of ${ys.join(", ")} by ${x.value}`) : h("p", { class: "muted" }, "Choose Y columns."));
      };
      out.replaceChildren(
        h("p", { class: "muted" }, `${result.count} rows${result.truncated ? " (truncated)" : ""}`),
        grid(names, result.rows),
        h("h2", {}, "Chart"),
        h("div", { class: "row" }, h("label", {}, "Type", kind), h("label", {}, "X", x), h("label", {}, "Y", y),
          h("button", { type: "button", class: "secondary", onclick: draw }, "Draw chart")),
        plot);
      if (result.rows.length && names.length > 1) draw();
    } catch (e) { out.replaceChildren(failure(e)); }
  };
  const exportCsv = async () => {
    try { download(await api("/query", { method: "POST", body: { sql: text.value, limit: 100000 }, accept: "text/csv" }), "query.csv"); } catch (e) { say(e.message); }
  };
  text.addEventListener("keydown", (ev) => { if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) run(ev); });
  page("SQL",
    h("form", { class: "card", "aria-label": "SQL query", onsubmit: run },
      h("label", {}, "Read-only SQL (Ctrl+Enter runs)", text),
      h("div", { class: "row" },
        h("button", { type: "submit" }, "Run"),
        h("button", { type: "button", class: "secondary", onclick: exportCsv }, "Export CSV"))),
    out);
}

// ---- runs ------------------------------------------------------------------------------

async function runs() {
  page("Runs", h("p", { class: "muted" }, "Loading…"));
  try {
    const list = await api("/runs?limit=50");
    const start = atLeast("admin") ? h("form", { class: "card row", "aria-label": "Start a run", onsubmit: async (ev) => {
      ev.preventDefault();
      const select = ev.target.querySelector("input").value.trim();
      try {
        const started = await api("/runs", { method: "POST", body: select ? { select } : {} });
        location.hash = `#/runs/${started.run_id}`;
      } catch (e) { say(e.message); }
    } }, h("label", {}, "Selection (empty: everything)", h("input", { name: "select", placeholder: "gold.x+" })),
      h("button", { type: "submit" }, "Start run")) : null;
    page("Runs", start,
      h("h2", {}, "Recent runs"),
      h("div", { class: "scroll" }, h("table", {},
        h("thead", {}, h("tr", {}, ["run", "status", "started", "duration", "rows written", "rejected", "error"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, list.runs.map((r) => h("tr", {},
          h("td", {}, h("a", { href: `#/runs/${r.run_id}` }, r.run_id)),
          h("td", {}, h("span", { class: `badge s-${r.status}` }, r.status)),
          h("td", {}, fmtTime(r.started_at)),
          h("td", { class: "num" }, `${(r.duration_ms / 1000).toFixed(1)} s`),
          cell(r.rows_written), cell(r.rows_rejected),
          h("td", { class: "error" }, r.error ?? "")))))));
  } catch (e) { page("Runs", failure(e)); }
}

async function run(id) {
  page(`Run ${id}`, h("p", { class: "muted" }, "Loading…"));
  let detail;
  try { detail = await api(`/runs/${encodeURIComponent(id)}`); } catch (e) { page(`Run ${id}`, failure(e)); return; }
  const steps = detail.steps || [];
  const t0 = Math.min(...steps.map((s) => Date.parse(s.started_at)), Date.parse(detail.started_at));
  const t1 = Math.max(...steps.map((s) => Date.parse(s.ended_at)), Date.parse(detail.ended_at ?? detail.started_at), t0 + 1);
  const span = t1 - t0;
  const gantt = h("div", { class: "gantt", role: "list", "aria-label": "Step timeline" }, steps.map((s) => {
    const left = ((Date.parse(s.started_at) - t0) / span) * 100;
    const width = Math.max(((Date.parse(s.ended_at) - Date.parse(s.started_at)) / span) * 100, 0.3);
    return h("div", { class: "bar-row", role: "listitem" },
      h("span", {}, `${s.step} `, h("span", { class: `badge s-${s.status}` }, s.status)),
      h("div", { class: "track", title: `${s.step}: ${s.duration_ms} ms` },
        h("div", { class: `bar s-${s.status}`, style: { left: `${left}%`, width: `${width}%` } })));
  }));
  const failed = steps.filter((s) => s.status === "failed");
  page(`Run ${id}`,
    h("p", {}, h("span", { class: `badge s-${detail.status}` }, detail.status), ` · started ${fmtTime(detail.started_at)}`,
      detail.duration_ms !== undefined ? ` · ${(detail.duration_ms / 1000).toFixed(1)} s` : ""),
    detail.error ? h("p", { class: "error", role: "alert" }, detail.error) : null,
    detail.status === "running" ? h("p", { class: "muted" }, "Running: this page refreshes every 2 s.") : null,
    h("h2", {}, "Timeline"), steps.length ? gantt : h("p", { class: "muted" }, "No steps yet."),
    failed.length ? h("section", { "aria-label": "Failed steps" }, h("h2", {}, "Failed steps"),
      failed.map((s) => h("div", { class: "card" }, h("strong", {}, s.step), h("p", { class: "error" }, s.error ?? "")))) : null,
    h("h2", {}, "Steps"),
    grid(["step", "layer", "status", "duration_ms", "rows_in", "rows_written", "rows_rejected", "attempts", "version", "error"], steps));
  if (detail.status === "running") setTimeout(() => { if (location.hash === `#/runs/${id}`) run(id); }, 2000);
}

// ---- lineage ---------------------------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

/** The DAG as columns by layer (bronze, silver, gold, others), edges as curves; a node is a
 * link to its table. */
async function lineage() {
  page("Lineage", h("p", { class: "muted" }, "Loading…"));
  let dag;
  try { dag = await api("/lineage"); } catch (e) { page("Lineage", failure(e)); return; }
  if (!dag.nodes.length) { page("Lineage", h("p", { class: "muted" }, "No pipeline steps visible.")); return; }
  const order = ["bronze", "silver", "gold"];
  const layers = [...new Set(dag.nodes.map((n) => n.layer))]
    .sort((a, b) => (order.indexOf(a) + 1 || 9) - (order.indexOf(b) + 1 || 9));
  const W = 210, NW = 170, NH = 30, GAP = 14, TOP = 30;
  const pos = new Map();
  for (const [col, layer] of layers.entries()) {
    dag.nodes.filter((n) => n.layer === layer).forEach((n, row) => {
      pos.set(n.table, { x: 10 + col * W, y: TOP + row * (NH + GAP) });
    });
  }
  const height = Math.max(...[...pos.values()].map((p) => p.y)) + NH + 10;
  const root = svg("svg", { viewBox: `0 0 ${layers.length * W} ${height}`, width: layers.length * W, height,
    role: "group", "aria-label": "Lineage graph" });
  layers.forEach((layer, col) => root.append(svg("text", { x: 10 + col * W, y: 16, class: "lineage-layer" }, layer)));
  for (const e of dag.edges) {
    const a = pos.get(e.from), b = pos.get(e.to);
    if (!a || !b) continue;
    const x1 = a.x + NW, y1 = a.y + NH / 2, x2 = b.x, y2 = b.y + NH / 2, mx = (x1 + x2) / 2;
    root.append(svg("path", { d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, class: "lineage-edge" }));
  }
  for (const n of dag.nodes) {
    const p = pos.get(n.table);
    const name = n.table.slice(n.layer.length + 1);
    const link = svg("a", { href: `#/table/${n.table}`, "aria-label": n.table, class: "lineage-node" },
      svg("rect", { x: p.x, y: p.y, width: NW, height: NH, rx: 5 }),
      svg("text", { x: p.x + 8, y: p.y + NH / 2 + 5 }, name.length > 22 ? `${name.slice(0, 21)}…` : name));
    root.append(link);
  }
  page("Lineage", h("p", { class: "muted" }, `${dag.nodes.length} tables, ${dag.edges.length} edges; a table opens it.`),
    h("div", { class: "scroll card" }, root),
    h("h2", {}, "Edges"), grid(["from", "to"], dag.edges));
}

// ---- quality ---------------------------------------------------------------------------

async function quality() {
  page("Quality", h("p", { class: "muted" }, "Loading…"));
  try {
    const [outcomes, cat] = await Promise.all([
      api("/query", { method: "POST", body: { limit: 10000, sql:
        'SELECT "table", rule, action, passed, failed, recorded_at FROM _system.expectations ORDER BY recorded_at' } }),
      api("/catalog"),
    ]);
    const byTable = new Map();
    for (const r of outcomes.rows) {
      if (!byTable.has(r.table)) byTable.set(r.table, new Map());
      const rules = byTable.get(r.table);
      if (!rules.has(r.rule)) rules.set(r.rule, []);
      rules.get(r.rule).push(r);
    }
    const quarantines = cat.tables.filter((t) => /__(quarantine|rejected)$/.test(t.name));
    const sections = [...byTable].map(([table, rules]) => {
      const times = [...new Set([...rules.values()].flat().map((r) => r.recorded_at))].sort();
      const datasets = [...rules].flatMap(([rule, rs]) => {
        const at = new Map(rs.map((r) => [r.recorded_at, r]));
        return [{ label: `${rule} failed`, data: times.map((t) => at.get(t)?.failed ?? null) },
          { label: `${rule} passed`, data: times.map((t) => at.get(t)?.passed ?? null) }];
      });
      const latest = [...rules].map(([rule, rs]) => rs[rs.length - 1]);
      return h("section", { class: "card", "aria-label": `Quality of ${table}` },
        h("h2", {}, h("a", { href: `#/table/${table}` }, table)),
        chart("line", times.map(fmtTime), datasets, `passed and failed rows per rule of ${table} over time`),
        grid(["rule", "action", "passed", "failed", "recorded_at"], latest));
    });
    page("Quality",
      sections.length ? sections : h("p", { class: "muted" }, "No expectation outcomes recorded yet."),
      h("h2", {}, "Quarantined and rejected rows"),
      quarantines.length ? h("ul", {}, quarantines.map((t) => h("li", {},
        h("a", { href: `#/table/${t.table}` }, t.table), ` · ${t.rows ?? "?"} rows`))) : h("p", { class: "muted" }, "None."));
  } catch (e) { page("Quality", failure(e)); }
}

// ---- schedules -------------------------------------------------------------------------

async function schedules() {
  page("Schedules", h("p", { class: "muted" }, "Loading…"));
  try {
    const list = await api("/schedules");
    const toggle = async (s) => {
      try { await api(`/schedules/${encodeURIComponent(s.name)}`, { method: "PATCH", body: { paused: !s.paused } }); schedules(); } catch (e) { say(e.message); }
    };
    page("Schedules", list.length ? h("div", { class: "scroll" }, h("table", {},
      h("thead", {}, h("tr", {}, ["schedule", "cron", "task", "next fire", "last outcome", "paused", ""].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, list.map((s) => h("tr", {},
        h("td", {}, s.name), h("td", {}, `${s.cron} (${s.timezone})`), h("td", {}, s.task ?? "run"),
        h("td", {}, s.next_fire_local ?? ""),
        h("td", {}, s.last ? h("span", { class: `badge s-${s.last.outcome === "started" ? "ok" : "failed"}` }, s.last.outcome) : "—"),
        h("td", {}, s.paused ? "paused" : "active"),
        h("td", {}, atLeast("admin") ? h("button", { type: "button", class: "secondary", onclick: () => toggle(s) }, s.paused ? "Resume" : "Pause") : "")))))) :
      h("p", { class: "muted" }, "The project has no schedules."));
  } catch (e) { page("Schedules", failure(e)); }
}

// ---- routing ---------------------------------------------------------------------------

function route() {
  const [, section = "", ...rest] = location.hash.split("/");
  const arg = decodeURIComponent(rest.join("/"));
  if (!state.token) { if (section !== "signin") location.hash = "#/signin"; else signIn(); renderChrome(); return; }
  renderChrome();
  switch (section) {
    case "table": return table(arg);
    case "sql": return sql();
    case "runs": return arg ? run(arg) : runs();
    case "schedules": return schedules();
    case "quality": return quality();
    case "lineage": return lineage();
    case "signin": case "catalog": default: return catalog();
  }
}

window.addEventListener("hashchange", route);
route();
