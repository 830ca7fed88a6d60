// The Assay console: the catalog, one table, SQL.

import { h, say, api, fmtBytes, cell, grid, download, chart, page, failure } from "../lib.js";

// ---- catalog ---------------------------------------------------------------------------

export async function catalog() {
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

export async function table(name) {
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

export function sql() {
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
