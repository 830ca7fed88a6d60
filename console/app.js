// The Assay console: one page over the public REST API (/api/v1), no build step, no
// dependencies. This entry module signs in and routes; lib.js holds the shared parts (the
// token, in memory only), pages/ the pages.

import { state, main, hooks, h, say, api, atLeast, page, failure } from "./lib.js";
import { catalog, table, sql } from "./pages/data.js";
import { lineage } from "./pages/lineage.js";
import { runs, run, quality, schedules } from "./pages/ops.js";

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

// ---- routing ---------------------------------------------------------------------------

function route() {
  state.visit += 1;
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

hooks.signOut = signOut;
window.addEventListener("hashchange", route);
route();
