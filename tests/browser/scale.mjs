// The dashboard at organization scale, in Debian's Chromium: run by scripts/dashboard-scale.sh
// against an administrator that estate-loadgen filled (thousands of members, millions of
// buckets), with ESTATE_DASHBOARD_URL and ESTATE_TOKEN. For each page it prints the time from
// asking for the page to its first render (the view replaced and no longer busy) and the
// page's height in pixels, then one JSON line with every figure. It fails when a page is over
// ESTATE_MAX_PAGE_HEIGHT pixels (default 3,000: three screens), when a list does not say how
// many rows it holds in all, or on any console or page error.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const url = process.env.ESTATE_DASHBOARD_URL;
const token = process.env.ESTATE_TOKEN;
const maxHeight = Number(process.env.ESTATE_MAX_PAGE_HEIGHT || 3000);
const shots = process.env.ESTATE_SCREENSHOTS;
if (shots) mkdirSync(shots, { recursive: true });

// [name, address, the list's pager (or null), the figure that must be there]
const PAGES = [
  ["summary", "#/summary", null, "#summary [data-stat=bucketCount]"],
  ["members", "#/members", "#members-pager", "#member-states"],
  ["members, stale", "#/members?state=stale", "#members-pager", "#member-states"],
  ["members, sorted by buckets", "#/members?sort=bucketCount&desc=true", "#members-pager", "#member-states"],
  ["accounts", "#/accounts", "#accounts-pager", "#accounts"],
  ["buckets", "#/buckets", "#buckets-pager", "#buckets"],
  ["buckets, public", `#/buckets?${new URLSearchParams({ criteria: JSON.stringify({ "publicAccess.effectivePermission": { eq: ["PUBLIC"] } }) })}`, "#buckets-pager", "#buckets"],
  ["findings", "#/findings", "#findings-pager", "#findings"],
  ["posture", "#/posture", "#posture-pager", "#posture-reasons"],
  ["posture, public", "#/posture?reason=PUBLIC", "#posture-pager", "#posture-reasons"],
];

const problems = [];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
});
const figures = [];
try {
  const page = await browser.newPage({ viewport: { width: 1360, height: 1000 } });
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console error: ${m.text()}`); });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  await page.goto(url + "#/signin");
  await page.evaluate((t) => sessionStorage.setItem("estate-token", t), token);
  let first = true;
  for (const [name, hash, pager, figure] of PAGES) {
    const started = Date.now();
    // The first page is a hash change in a tab that loaded the dashboard and holds the token
    // (the script's own load is not timed); each next one is a hash change from the page
    // before, as a click makes.
    if (first) await page.goto(url + hash);
    else await page.evaluate((h) => { location.hash = h; }, hash);
    first = false;
    await page.waitForFunction((h) => document.querySelector("#view")?.dataset.hash === h && !document.querySelector("#view[aria-busy]"), hash, { timeout: 120_000 });
    const renderMs = Date.now() - started;
    const shown = (await page.textContent("#error")) || "";
    if (shown) problems.push(`${name}: the page shows an error: ${shown}`);
    if (!(await page.$(figure))) problems.push(`${name}: ${figure} is missing`);
    const height = await page.evaluate(() => document.documentElement.scrollHeight);
    let total = null;
    if (pager) {
      total = await page.getAttribute(pager, "data-total").catch(() => null);
      if (total == null || !Number.isFinite(Number(total))) problems.push(`${name}: no pager saying how many rows there are (${total})`);
    }
    if (height > maxHeight) problems.push(`${name}: ${height} px tall, over ${maxHeight}`);
    figures.push({ page: name, renderMs, heightPx: height, rowsInAll: total == null ? null : Number(total) });
    console.log(`${name.padEnd(28)} first render ${String(renderMs).padStart(6)} ms   height ${String(height).padStart(6)} px` + (total == null ? "" : `   ${Number(total).toLocaleString("en-US")} rows in all`));
    if (shots) await page.screenshot({ path: join(shots, name.replace(/[^a-z]+/g, "-") + ".png"), fullPage: true });
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify({ maxHeightPx: maxHeight, pages: figures }));
if (problems.length) {
  console.error(problems.join("\n"));
  process.exit(1);
}
