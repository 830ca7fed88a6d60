// Drives the Assay web console in Debian's headless Chromium with playwright-core.
//
//   node tests/browser/console.mjs BASE_URL SCREENSHOT_DIR
//
// Signs in as `root` (admin, password pw-123456) and as `ana` (reader, password
// reader-pass-1), walks the catalog, a gold table with a filter, a run, SQL; exits 1 naming
// the first check that failed. Screenshots of every page land in SCREENSHOT_DIR.

import { check, launch, lowContrast } from "./common.mjs";

const [base, shots] = process.argv.slice(2);
const browser = await launch();

async function signIn(page, user, password) {
  await page.goto(base + "/");
  await page.getByLabel("User name").fill(user);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("region", { name: "Layer gold" }).waitFor();
}

const errors = [];
const contrast = [];

/** A full-page screenshot as SCREENSHOT_DIR/NAME.png; the page's text contrast is checked too. */
async function shot(page, name) {
  await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
  for (const low of await lowContrast(page)) contrast.push({ page: name, ...low });
}
try {
  // An admin at 1280×800.
  const admin = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  admin.on("pageerror", (e) => errors.push(String(e)));
  // Failed requests show as console errors too; the expected ones (a wrong password) are
  // checked on the page instead.
  admin.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) errors.push(m.text());
  });
  admin.on("response", (r) => { if (r.status() >= 400) console.log(`  (${r.status()} ${r.request().method()} ${r.url()})`); });
  await admin.goto(base + "/");
  await admin.getByRole("form", { name: "Sign in" }).waitFor();
  await shot(admin, "01-sign-in");
  // A wrong password is refused with the API's message.
  await admin.getByLabel("User name").fill("root");
  await admin.getByLabel("Password").fill("wrong-password");
  await admin.getByRole("button", { name: "Sign in" }).click();
  await admin.getByRole("alert").waitFor();
  check((await admin.getByRole("alert").textContent()).includes("invalid"), "a wrong password is refused");

  await signIn(admin, "root", "pw-123456");
  for (const layer of ["bronze", "silver", "gold"]) {
    check(await admin.getByRole("region", { name: `Layer ${layer}` }).isVisible(), `admin sees layer ${layer}`);
  }
  const stored = await admin.evaluate(() => JSON.stringify(localStorage) + JSON.stringify(sessionStorage) + document.cookie);
  check(!stored.includes("ey"), "no token in localStorage, sessionStorage or cookies");
  await shot(admin, "02-catalog");

  // A gold table: schema, history, rows; a filter narrows the rows.
  await admin.getByRole("link", { name: "daily_revenue" }).click();
  await admin.getByRole("heading", { name: "gold.daily_revenue", exact: true }).waitFor();
  await admin.getByText(/^Rows 1–7 /).waitFor();
  await admin.getByRole("button", { name: "Add filter" }).click();
  await admin.getByLabel("Filter column").selectOption("category");
  await admin.getByLabel("Filter value").fill("C");
  await admin.getByRole("button", { name: "Apply" }).click();
  await admin.getByText(/^Rows 1–3 /).waitFor();
  const cells = await admin.locator("table").first().locator("tbody tr").count();
  check(cells === 3, `the filter category = C leaves 3 rows (got ${cells})`);
  check(await admin.getByRole("heading", { name: "History", exact: true }).isVisible(), "the table's history is shown");
  check(await admin.getByRole("cell", { name: "Decimal128(38, 2)" }).count() === 1 ||
    await admin.getByRole("cell", { name: /^Decimal128/ }).count() >= 1, "the schema shows column types");
  check(!(await admin.locator("main").innerText()).includes("nullnull"), "no stray text");
  const download = admin.waitForEvent("download");
  await admin.getByRole("button", { name: "Download CSV" }).click();
  const csv = await download;
  check(csv.suggestedFilename() === "gold.daily_revenue.csv", "the rows download as CSV");
  const parquetDownload = admin.waitForEvent("download");
  await admin.getByRole("button", { name: "Download Parquet" }).click();
  const parquet = await parquetDownload;
  const bytes = await import("node:fs").then((fs) => parquet.path().then((p) => fs.readFileSync(p)));
  check(parquet.suggestedFilename() === "gold.daily_revenue.parquet" &&
    bytes.subarray(0, 4).toString() === "PAR1" && bytes.subarray(-4).toString() === "PAR1",
    `the rows download as Parquet (${bytes.length} bytes)`);
  await shot(admin, "03-table");

  // Lineage: the DAG as a graph; a node opens its table.
  await admin.getByRole("link", { name: "Lineage" }).click();
  const graph = admin.getByRole("group", { name: "Lineage graph" });
  await graph.waitFor();
  check(await graph.getByRole("link").count() >= 9, "the lineage graph shows every step's table");
  await shot(admin, "03-lineage");
  await graph.getByRole("link", { name: "silver.orders", exact: true }).click();
  await admin.getByRole("heading", { name: "silver.orders", exact: true }).waitFor();
  check(true, "a lineage node opens its table");

  // Runs: the newest run failed (a broken model); its steps on a timeline, the failed step
  // with its error.
  await admin.getByRole("link", { name: "Runs" }).click();
  await admin.getByRole("heading", { name: "Runs", exact: true }).waitFor();
  const newest = admin.locator("tbody tr").first();
  check((await newest.innerText()).includes("failed"), "the newest run is listed as failed");
  await newest.locator("a").click();
  await admin.getByRole("list", { name: "Step timeline" }).waitFor();
  const failedSteps = admin.getByRole("region", { name: "Failed steps" });
  await failedSteps.waitFor();
  const failedText = await failedSteps.innerText();
  check(failedText.includes("gold.broken") && failedText.includes("no_such_column"),
    `the failed step and its error are shown (${failedText.slice(0, 200)})`);
  const bars = await admin.getByRole("listitem").count();
  check(bars >= 7, `the run shows its steps on a timeline (${bars})`);
  check(!(await admin.locator("main > p, main > div.gantt").allInnerTexts()).some((t) => t.trim() === "null"), "no stray null");
  await shot(admin, "04-run");

  // Quality: passed/failed per rule over time, per table, and the quarantined rows.
  await admin.getByRole("link", { name: "Quality" }).click();
  await admin.getByRole("region", { name: "Quality of silver.orders" }).waitFor();
  check(await admin.getByRole("img", { name: /passed and failed rows per rule of silver.orders/ }).isVisible(),
    "quality over time is charted per table");
  check(await admin.getByRole("link", { name: "silver.orders__quarantine" }).isVisible(), "quarantined rows are linked");
  await shot(admin, "05-quality");

  // SQL.
  await admin.getByRole("link", { name: "SQL" }).click();
  await admin.getByLabel(/Read-only SQL/).fill("SELECT category, SUM(revenue) AS revenue FROM gold.daily_revenue GROUP BY category ORDER BY category");
  await admin.getByRole("button", { name: "Run" }).click();
  await admin.getByText(/^\d+ rows/).waitFor();
  const header = await admin.locator("thead th").allTextContents();
  check(header.join(",") === "category,revenue", `the SQL result has its columns (${header})`);
  // The result as a chart: revenue by category, drawn by Chart.js on a canvas.
  const plotted = admin.getByRole("img", { name: "line chart of revenue by category" });
  await plotted.waitFor();
  await admin.getByLabel("Chart type").selectOption("bar");
  await admin.getByRole("button", { name: "Draw chart" }).click();
  await admin.getByRole("img", { name: "bar chart of revenue by category" }).waitFor();
  // The chart is made on the next animation frame: wait for it.
  const handle = await admin.waitForFunction(() => {
    const ch = window.Chart.getChart(document.querySelector("canvas"));
    return ch && ch.config.type === "bar" ? { type: ch.config.type, points: ch.data.datasets[0].data.length } : null;
  });
  const drawn = await handle.jsonValue();
  check(drawn && drawn.type === "bar" && drawn.points === 3, `the SQL result charts as bars (${JSON.stringify(drawn)})`);
  await shot(admin, "06-sql-chart");
  await admin.getByLabel(/Read-only SQL/).fill("DROP TABLE gold.daily_revenue");
  await admin.getByRole("button", { name: "Run" }).click();
  await admin.getByRole("alert").waitFor();
  await shot(admin, "06-sql-refused");

  // Schedules: next fire time, pause and resume (admins).
  await admin.getByRole("link", { name: "Schedules" }).click();
  const nightly = admin.getByRole("row").filter({ hasText: "nightly" });
  await nightly.waitFor();
  check((await nightly.innerText()).includes("0 2 * * *") && (await nightly.innerText()).includes("active"),
    `the schedule is listed with its cron (${await nightly.innerText()})`);
  check((await nightly.locator("td").nth(3).innerText()).trim() !== "", "its next fire time is shown");
  await nightly.getByRole("button", { name: "Pause" }).click();
  await nightly.getByRole("button", { name: "Resume" }).waitFor();
  check((await nightly.innerText()).includes("paused"), "an admin pauses it");
  await shot(admin, "06-schedules-paused");
  await nightly.getByRole("button", { name: "Resume" }).click();
  await nightly.getByRole("button", { name: "Pause" }).waitFor();
  check((await nightly.innerText()).includes("active"), "and resumes it");

  // A reader at phone width: gold only, silver does not exist for them.
  const reader = await browser.newPage({ viewport: { width: 390, height: 844 } });
  reader.on("pageerror", (e) => errors.push(String(e)));
  await signIn(reader, "ana", "reader-pass-1");
  check(await reader.getByRole("region", { name: "Layer gold" }).isVisible(), "a reader sees gold");
  check(await reader.getByRole("region", { name: "Layer silver" }).count() === 0, "a reader sees no silver");
  check(await reader.getByRole("link", { name: "Runs" }).isHidden(), "a reader has no Runs section");
  await reader.getByRole("link", { name: "Lineage" }).click();
  const readerGraph = reader.getByRole("group", { name: "Lineage graph" });
  await readerGraph.waitFor();
  const readerNodes = await readerGraph.getByRole("link").allInnerTexts();
  check(readerNodes.length >= 2 && !(await readerGraph.getByRole("link", { name: /^silver\./ }).count()),
    `a reader's lineage has gold only (${readerNodes})`);
  await shot(reader, "07-reader-phone");
  await reader.evaluate(() => { location.hash = "#/table/silver.orders"; });
  await reader.getByRole("alert").waitFor();
  await shot(reader, "08-reader-silver");

  // Keyboard: the sign-in form works without a mouse.
  const keys = await browser.newPage();
  await keys.goto(base + "/");
  await keys.getByLabel("User name").waitFor();
  await keys.keyboard.type("ana");
  await keys.keyboard.press("Tab");
  await keys.keyboard.type("reader-pass-1");
  await keys.keyboard.press("Enter");
  await keys.getByRole("region", { name: "Layer gold" }).waitFor();
  check(true, "sign-in by keyboard");

  check(contrast.length === 0,
    `text contrast at least 4.5:1 (3:1 when large) on every page shot: ${JSON.stringify(contrast)}`);
  check(errors.length === 0, `no script errors (${errors.join("; ")})`);
} catch (e) {
  console.error(e.message);
  for (const [i, p] of browser.contexts().flatMap((c) => c.pages()).entries()) {
    await p.screenshot({ path: `${shots}/failed-${i}.png`, fullPage: true }).catch(() => {});
  }
  console.error(errors.join("\n"));
  await browser.close();
  process.exit(1);
}
await browser.close();
