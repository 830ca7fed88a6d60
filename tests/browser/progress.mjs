// Watches a running run in the Assay web console, in Debian's headless Chromium with
// playwright-core.
//
//   node tests/browser/progress.mjs BASE_URL SCREENSHOT_DIR RUN_ID RELEASE_URL
//
// The run's `bronze.feed` step waits on a test HTTP API until RELEASE_URL is asked. Signs in
// as `root` (password pw-123456), opens the run: its finished steps, the running feed and the
// step not started yet are shown; then releases the feed and waits for the page (which
// refreshes itself) to show the run succeeded. Exits 1 naming the first check that failed.

import { check, launch, lowContrast } from "./common.mjs";

const [base, shots, runId, release] = process.argv.slice(2);
const browser = await launch();

const errors = [];
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  await page.goto(base + "/");
  await page.getByLabel("User name").fill("root");
  await page.getByLabel("Password").fill("pw-123456");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("link", { name: "Runs", exact: true }).waitFor();
  await page.goto(`${base}/#/runs/${runId}`);

  const progress = page.getByRole("status", { name: "Progress" });
  await progress.waitFor();
  const text = await progress.textContent();
  check(text.startsWith("8 of 10 steps done, 1 running."), `the progress line counts the steps (${text})`);
  const timeline = page.getByRole("list", { name: "Step timeline" });
  const feed = timeline.getByRole("listitem").filter({ hasText: "bronze.feed" });
  check((await feed.textContent()).includes("running"), "the feed is shown running");
  const pending = timeline.getByRole("listitem").filter({ hasText: "gold.feed_count" });
  check((await pending.textContent()).includes("pending"), "its consumer is shown pending");
  const orders = timeline.getByRole("listitem").filter({ hasText: "silver.orders" });
  check((await orders.textContent()).includes("succeeded"), "a finished step is shown succeeded");
  // The catalog the sign-in opened was still loading when the run page opened: its late
  // answer must not draw over the run.
  await page.waitForTimeout(1000);
  check(await page.getByRole("heading", { name: `Run ${runId}`, exact: true }).isVisible(),
    "a slower earlier page does not draw over the current one");
  await page.screenshot({ path: `${shots}/20-run-in-progress.png`, fullPage: true });
  const low = await lowContrast(page);
  check(low.length === 0, `text contrast of the running run: ${JSON.stringify(low)}`);

  const released = await fetch(release);
  check(released.ok, "the feed is released");
  // The page refreshes itself every 2 s until the run ends.
  await page.locator("main p .badge.s-succeeded").first().waitFor({ timeout: 60000 });
  await timeline.getByRole("listitem").filter({ hasText: "gold.feed_count" })
    .filter({ hasText: "succeeded" }).waitFor();
  check(await page.getByRole("status", { name: "Progress" }).count() === 0, "no progress line once it ended");
  check(await timeline.locator(".badge.s-pending").count() === 0, "nothing pending once it ended");
  check(await timeline.locator(".badge.s-running").count() === 0, "nothing running once it ended");
  console.log("ok - the page follows the run to its end");
  await page.screenshot({ path: `${shots}/21-run-finished.png`, fullPage: true });
  check(errors.length === 0, `no script errors (${errors.join("; ")})`);
} catch (e) {
  console.error(String(e));
  process.exitCode = 1;
} finally {
  await browser.close();
}
