// The Assay console: runs, quality, schedules (engineers and admins).

import { h, say, api, atLeast, fmtTime, cell, grid, chart, page, failure } from "../lib.js";

// ---- runs ------------------------------------------------------------------------------

export async function runs() {
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

export async function run(id) {
  page(`Run ${id}`, h("p", { class: "muted" }, "Loading…"));
  let detail;
  try { detail = await api(`/runs/${encodeURIComponent(id)}`); } catch (e) { page(`Run ${id}`, failure(e)); return; }
  const steps = [...(detail.steps || [])].sort((a, b) => Date.parse(a.started_at) - Date.parse(b.started_at));
  const pending = detail.pending || [];
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
  }).concat(pending.map((p) => h("div", { class: "bar-row", role: "listitem" },
    h("span", {}, `${p} `, h("span", { class: "badge s-pending" }, "pending")),
    h("div", { class: "track", title: `${p}: not started yet` })))));
  const done = steps.filter((s) => s.status !== "running").length;
  const active = steps.length - done;
  const failed = steps.filter((s) => s.status === "failed");
  page(`Run ${id}`,
    h("p", {}, h("span", { class: `badge s-${detail.status}` }, detail.status), ` · started ${fmtTime(detail.started_at)}`,
      detail.duration_ms !== undefined ? ` · ${(detail.duration_ms / 1000).toFixed(1)} s` : ""),
    detail.error ? h("p", { class: "error", role: "alert" }, detail.error) : null,
    detail.status === "running" ? h("p", { class: "muted", role: "status", "aria-label": "Progress" },
      detail.pending === undefined
        // Answered from _system.runs: another server runs it, and records its steps at the end.
        ? "Running on another server: its steps appear when it ends. This page refreshes every 2 s."
        : `${done} of ${done + active + pending.length} steps done, ${active} running. This page refreshes every 2 s.`) : null,
    h("h2", {}, "Timeline"), steps.length || pending.length ? gantt : h("p", { class: "muted" }, "No steps yet."),
    failed.length ? h("section", { "aria-label": "Failed steps" }, h("h2", {}, "Failed steps"),
      failed.map((s) => h("div", { class: "card" }, h("strong", {}, s.step), h("p", { class: "error" }, s.error ?? "")))) : null,
    h("h2", {}, "Steps"),
    grid(["step", "layer", "status", "duration_ms", "rows_in", "rows_written", "rows_rejected", "attempts", "version", "error"], steps));
  if (detail.status === "running") setTimeout(() => { if (location.hash === `#/runs/${id}`) run(id); }, 2000);
}

// ---- quality ---------------------------------------------------------------------------

export async function quality() {
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

export async function schedules() {
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
