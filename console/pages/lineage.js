// The Assay console: the lineage graph.

import { h, api, grid, page, failure } from "../lib.js";

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
export async function lineage() {
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
