// The Assay console's shared parts: state, elements, the API client, page drawing.
// The bearer token lives in this module's memory only (never in storage): a reload signs
// out. Every value from the API reaches the page as text (textContent), never as HTML.

// `visit` counts navigations: an answer that arrives after the user went elsewhere is
// dropped (see `api`), so a slow page never draws over the one the user is on.
export const state = { token: null, user: null, role: null, visit: 0, shown: -1 };
export const ROLE_RANK = { reader: 0, engineer: 1, admin: 2 };
export const main = document.getElementById("main");

/** Set by app.js: what a 401 on a signed-in session does. */
export const hooks = { signOut: (_message) => {} };

/** An element: h("a", {href: "#/"}, "text", child, ...). */
export function h(tag, attrs = {}, ...children) {
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

export function say(text) {
  const box = document.getElementById("status");
  box.textContent = text;
  if (text) setTimeout(() => { if (box.textContent === text) box.textContent = ""; }, 4000);
}

export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

/**
 * Calls the REST API; JSON in and out unless `accept` asks for another format (a Blob). The
 * answer (or error) of a call made before the user navigated away never arrives: the page
 * that asked is gone.
 */
export async function api(path, options) {
  const visit = state.visit;
  const stale = () => new Promise(() => {});
  try {
    const out = await request(path, options);
    return visit === state.visit ? out : stale();
  } catch (e) {
    if (visit !== state.visit) return stale();
    throw e;
  }
}

export async function request(path, { method = "GET", body, accept } = {}) {
  const headers = {};
  if (state.token) headers["Authorization"] = `Bearer ${state.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (accept) headers["Accept"] = accept;
  const res = await fetch(`/api/v1${path}`, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 401 && state.token) {
    hooks.signOut("Your session ended: sign in again.");
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

export function atLeast(role) { return ROLE_RANK[state.role] >= ROLE_RANK[role]; }

export function fmtBytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0; let v = Number(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function fmtTime(t) { return t ? new Date(t).toLocaleString() : ""; }

export function cell(v) {
  if (v === null || v === undefined) return h("td", { class: "muted" }, "null");
  if (typeof v === "number") return h("td", { class: "num" }, String(v));
  if (typeof v === "object") return h("td", {}, JSON.stringify(v));
  return h("td", {}, String(v));
}

/** A table of rows (objects) with the given columns. */
export function grid(columns, rows, caption) {
  return h("div", { class: "scroll" }, h("table", {},
    caption ? h("caption", { class: "muted" }, caption) : null,
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, columns.map((c) => cell(r[c])))))));
}

export function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/** A Chart.js chart (console/vendor/, loaded by index.html as `window.Chart`) on a canvas. */
export function chart(kind, labels, datasets, label) {
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

/**
 * Draws the page. The first draw of a visit moves the focus to the page; a redraw (a running
 * run's refresh) keeps it on the same link or control when that is still there.
 */
export function page(title, ...content) {
  const had = document.activeElement;
  const key = had && had !== main && main.contains(had)
    ? [had.tagName, had.getAttribute("href") ?? had.getAttribute("aria-label") ?? had.textContent] : null;
  main.replaceChildren(h("h1", {}, title), ...content.flat().filter((c) => c !== null && c !== undefined && c !== false));
  document.title = `${title} · Assay`;
  if (state.shown !== state.visit) {
    state.shown = state.visit;
    main.focus();
  } else if (key) {
    const same = [...main.querySelectorAll(key[0])].find((el) =>
      (el.getAttribute("href") ?? el.getAttribute("aria-label") ?? el.textContent) === key[1]);
    same?.focus();
  }
}

export function failure(e) {
  return h("p", { class: "error", role: "alert" }, e.message || String(e));
}
