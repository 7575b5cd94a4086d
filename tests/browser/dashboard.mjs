// The dashboard in a real browser (Debian's Chromium through playwright-core), driven by
// tests/tests/e2e/dashboard.rs (and by tests/tests/e2e/demo.rs against the local demo, whose
// screenshots the README shows), which seeds moto, runs the administrator and agents, and writes
// what the gRPC API says into the file named by ESTATE_EXPECTED:
//   { stats: GetBucketStatistics JSON, filter: { property, value, names }, publicBucket,
//     changeBucket }
// The script signs in, checks every summary figure against the statistics, applies a filter
// and checks the rows, opens the public bucket and finds its witness, then prints
// `ready-for-change`, waits for the finding the test's policy change raises to appear live,
// and saves screenshots in ESTATE_SCREENSHOTS. Any console error or page error fails it.
import { readFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { createHash, X509Certificate } from "node:crypto";
import { chromium } from "playwright-core";

const url = process.env.ESTATE_DASHBOARD_URL;
const token = process.env.ESTATE_TOKEN;
const expected = JSON.parse(readFileSync(process.env.ESTATE_EXPECTED, "utf8"));
const shots = process.env.ESTATE_SCREENSHOTS;
mkdirSync(shots, { recursive: true });

const problems = [];
const step = (what) => console.log(`step: ${what}`);
function check(condition, message) {
  if (!condition) throw new Error(message);
}
const get = (obj, path) => path.split(".").reduce((o, k) => (o == null ? undefined : o[k]), obj);

// A dashboard served over TLS by a throwaway CA (the local demo): Chromium trusts exactly that
// server key (by its SPKI hash) and nothing else it would not trust anyway; requests made
// from Node (page.request) trust the CA through NODE_EXTRA_CA_CERTS, set by the caller.
const args = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"];
if (process.env.ESTATE_SERVER_CERT) {
  const cert = new X509Certificate(readFileSync(process.env.ESTATE_SERVER_CERT));
  const spki = cert.publicKey.export({ type: "spki", format: "der" });
  args.push(`--ignore-certificate-errors-spki-list=${createHash("sha256").update(spki).digest("base64")}`);
}
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args });
try {
  const page = await browser.newPage({ viewport: { width: 1360, height: 1000 } });
  // Set just before a step that expects the server to refuse (the browser logs the 403).
  let refusalExpected = false;
  page.on("console", (message) => {
    if (refusalExpected && message.text().includes("status of 403")) return;
    if (message.type() === "error") problems.push(`console error: ${message.text()}`);
  });
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));

  step("an unauthenticated browser gets the sign-in form and no data");
  // The page runs under its Content-Security-Policy: a violation is a console error, and is
  // reported here too, on every page loaded.
  await page.exposeFunction("reportCspViolation", (what) => problems.push(`CSP violation: ${what}`));
  await page.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (e) => window.reportCspViolation(`${e.violatedDirective} ${e.blockedURI}`));
  });
  const served = await page.goto(url);
  const csp = served.headers()["content-security-policy"] || "";
  check(csp.includes("script-src 'sha256-") && csp.includes("frame-ancestors 'none'"), `the page's CSP: ${csp}`);
  await page.waitForSelector("#login:not([hidden])");
  const unauthenticated = await page.request.get(new URL("/api/statistics", url).href);
  check(unauthenticated.status() === 401, `the API answered ${unauthenticated.status()} without a token`);

  step("signing in");
  await page.fill("#token", token);
  await page.click("#login button[type=submit]");
  await page.waitForSelector("#summary [data-stat=bucketCount]");
  check(await page.evaluate(() => !!sessionStorage.getItem("estate-token")), "the token is kept in session storage");
  check(await page.evaluate(() => localStorage.length === 0), "nothing is kept in local storage");

  step("every summary figure equals GetBucketStatistics");
  const shown = await page.$$eval("[data-stat]", (nodes) => nodes.map((n) => [n.dataset.stat, n.dataset.value]));
  const shownStats = new Map(shown);
  const figures = [];
  const walk = (obj, prefix) => {
    for (const [k, v] of Object.entries(obj)) {
      const path = prefix ? `${prefix}.${k}` : k;
      if (v !== null && typeof v === "object") walk(v, path);
      else figures.push([path, v]);
    }
  };
  walk(expected.stats, "");
  for (const [path, value] of figures) {
    check(shownStats.has(path), `the summary does not show ${path}`);
    check(shownStats.get(path) === String(value), `${path}: the summary shows ${shownStats.get(path)}, GetBucketStatistics says ${value}`);
  }
  console.log(`checked ${figures.length} figures`);
  await page.waitForSelector("svg[aria-label='Buckets and exposure per account'] rect");
  await page.screenshot({ path: join(shots, "summary.png"), fullPage: true });

  step("a figure links to the filtered list, and a filter matches DescribeBuckets");
  await page.click("[data-stat='bucketCountByEffectivePermission.publiclyAccessible']");
  await page.waitForSelector("#buckets");
  await page.goto(`${url}#/buckets`);
  await page.waitForSelector("#filter-form");
  await page.selectOption("select[name=field]", expected.filter.property);
  await page.selectOption("select[name=op]", "eq");
  await page.fill("input[name=value]", expected.filter.value);
  await page.click("#filter-form button[type=submit]");
  await page.waitForSelector("#chips .chip");
  await page.waitForFunction(() => !document.querySelector("#view[aria-busy]"));
  const rows = await page.$$eval("#buckets tbody tr", (trs) => trs.map((tr) => tr.dataset.bucket));
  check(JSON.stringify(rows) === JSON.stringify(expected.filter.names),
    `the filtered rows ${JSON.stringify(rows)} differ from DescribeBuckets ${JSON.stringify(expected.filter.names)}`);
  const shareable = page.url();
  check(decodeURIComponent(shareable).includes(expected.filter.value), `the filter is not in the address: ${shareable}`);
  const second = await browser.newPage();
  second.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  await second.goto(url);
  await second.evaluate((t) => sessionStorage.setItem("estate-token", t), token);
  await second.goto(shareable);
  await second.waitForSelector("#buckets tbody tr");
  const again = await second.$$eval("#buckets tbody tr", (trs) => trs.map((tr) => tr.dataset.bucket));
  check(JSON.stringify(again) === JSON.stringify(rows), "the same address shows the same rows");
  await second.close();

  step("the public bucket's page shows its witness");
  await page.click(`#buckets tr[data-bucket='${expected.publicBucket}'] a.bucket-link`);
  await page.waitForSelector("#bucket-name");
  check((await page.textContent("#effective-permission")) === "PUBLIC", "the bucket page says PUBLIC");
  const witness = await page.textContent("#witnesses .witness[data-question=publicRead]");
  check(witness.includes("s3:GetObject") && witness.includes(`arn:aws:s3:::${expected.publicBucket}/`) && witness.includes("\n  as "),
    `the witness does not read as the request it is: ${witness}`);
  check((await page.$$("#bpa tbody tr")).length === 4, "the four block public access settings side by side");
  await page.screenshot({ path: join(shots, "bucket.png"), fullPage: true });

  step("members: every organization account, counted by state");
  await page.goto(`${url}#/members`);
  await page.waitForSelector("#members tbody tr");
  for (const [account, status] of Object.entries(expected.members)) {
    const cell = await page.textContent(`#members tr[data-account='${account}'] td:nth-child(2)`);
    check(cell === status, `member ${account}: ${cell}, expected ${status}`);
  }
  const accounts = Object.keys(expected.members).sort();
  const stateCount = (state) => page.getAttribute(`#member-states [data-state='${state}']`, "data-count");
  check(await stateCount("") === String(accounts.length), `all members: ${await stateCount("")}`);
  for (const [state, count] of Object.entries(expected.memberCounts)) {
    check(await stateCount(state) === String(count), `members ${state}: ${await stateCount(state)}, expected ${count}`);
  }
  await page.screenshot({ path: join(shots, "members.png"), fullPage: true });
  const memberRows = () => page.$$eval("#members tbody tr", (trs) => trs.map((tr) => tr.dataset.account));
  // The view of an address is on screen: rendered for it (`exact`, or one that holds `part`),
  // and not busy. A list's view stays the same from page to page, so its name proves nothing.
  const showing = ({ exact, part }) => page.waitForFunction(({ exact, part }) => {
    const view = document.querySelector("#view");
    const hash = view?.dataset.hash || "";
    return view && !view.hasAttribute("aria-busy") && (exact ? hash === exact : hash.includes(part));
  }, { exact, part });

  step("members: a state count is a filter");
  for (const [state, count] of Object.entries(expected.memberCounts)) {
    await page.click(`#member-states [data-state='${state}']`);
    await showing({ exact: `#/members?state=${state}` });
    check(await page.$(`#member-states [data-state='${state}'].selected`), `the ${state} count is not shown as the filter`);
    const rows = await memberRows();
    check(rows.length === count, `filtered on ${state}: ${JSON.stringify(rows)}, expected ${count} rows`);
    check(decodeURIComponent(page.url()).includes(`state=${state}`), `the state filter is not in the address: ${page.url()}`);
  }

  step("members: search by account ID");
  await page.goto(`${url}#/members`);
  await showing({ exact: "#/members" });
  const last = accounts[accounts.length - 1];
  await page.fill("#member-search input[name=search]", last.slice(3, 9));
  await page.click("#member-search button[type=submit]");
  await showing({ part: `search=${last.slice(3, 9)}` });
  check(JSON.stringify(await memberRows()) === JSON.stringify([last]), `searching for part of ${last}: ${JSON.stringify(await memberRows())}`);

  step("members: pages of one row, through the API's page tokens");
  await page.goto(`${url}#/members?size=1`);
  const seen = [];
  for (let n = 1; n <= accounts.length; n++) {
    await showing(n === 1 ? { exact: "#/members?size=1" } : { part: `page=${n}` });
    check(await page.getAttribute("#members-pager", "data-page") === String(n), `on page ${await page.getAttribute("#members-pager", "data-page")}, expected ${n}`);
    const info = await page.textContent("#members-pager .page-info");
    check(info.includes(`of ${accounts.length} · page ${n} of ${accounts.length}`), `the pager says: ${info}`);
    seen.push(...(await memberRows()));
    const next = await page.$("#members-pager .next-page");
    check((next !== null) === (n < accounts.length), `page ${n} of ${accounts.length}: next link ${next !== null}`);
    if (next) await next.click();
  }
  check(JSON.stringify(seen) === JSON.stringify(accounts), `the pages held ${JSON.stringify(seen)}, expected ${JSON.stringify(accounts)}`);
  await page.click("#members-pager .prev-page");
  await showing({ part: `page=${accounts.length - 1}` });
  check(await page.getAttribute("#members-pager", "data-page") === String(accounts.length - 1), "the page before");

  step("accounts: every account, most exposed first, counted");
  await page.goto(`${url}#/accounts`);
  await showing({ exact: "#/accounts" });
  check(await page.getAttribute("#accounts-pager", "data-total") === String(accounts.length), "the accounts page counts every account");
  const ranked = await page.$$eval("#accounts tbody tr", (trs) => trs.map((tr) => tr.dataset.account));
  check(ranked[0] === expected.mostExposed, `most exposed first: ${JSON.stringify(ranked)}, expected ${expected.mostExposed} first`);

  step("posture: counted by reason, each a filter");
  await page.goto(`${url}#/posture`);
  await page.waitForSelector("#posture tbody tr");
  const publicCount = await page.getAttribute("#posture-reasons [data-reason=PUBLIC]", "data-count");
  check(publicCount === String(expected.stats.bucketCountByEffectivePermission.publiclyAccessible), `posture PUBLIC: ${publicCount}`);
  await page.click("#posture-reasons [data-reason=PUBLIC]");
  await showing({ exact: "#/posture?reason=PUBLIC" });
  check((await page.textContent("#posture")).includes(expected.publicBucket), "the posture report lists the public bucket");
  const publicRows = await page.$$eval("#posture tbody tr", (trs) => trs.length);
  check(String(publicRows) === publicCount, `${publicRows} rows under PUBLIC, counted ${publicCount}`);

  step("a finding appears live");
  await page.goto(`${url}#/findings`);
  await page.waitForFunction(() => document.querySelector("#live-status")?.textContent === "on");
  const before = Number((await page.textContent("#changed-24h")).replace(/,/g, ""));
  console.log("ready-for-change");
  await page.waitForSelector(`#findings tr.new a[href='#/bucket/${expected.changeBucket}']`, { timeout: 60_000 });
  const after = Number((await page.textContent("#changed-24h")).replace(/,/g, ""));
  check(after > before, `the 24-hour count went from ${before} to ${after}`);
  await page.screenshot({ path: join(shots, "findings.png"), fullPage: true });

  step("a read-only token cannot create a findings filter, and is told why");
  await page.fill("#new-filter input[name=name]", "from-the-browser");
  await page.fill("#new-filter textarea[name=criteria]", `resourcesAffected.s3Bucket.name=${expected.changeBucket}`);
  refusalExpected = true;
  await page.click("#new-filter button[type=submit]");
  await page.waitForFunction(() => (document.querySelector("#filter-message")?.textContent || "").includes("read-only"));
  refusalExpected = false;
  check(!(await page.$("#findings-filters")), "no filter was created");

  step("signing out forgets the token");
  await page.click("#logout");
  await page.waitForSelector("#login:not([hidden])");
  check(await page.evaluate(() => sessionStorage.getItem("estate-token") === null), "the token is gone");

  if (problems.length) throw new Error(problems.join("\n"));
  console.log("dashboard: ok");
} catch (error) {
  // What the page said, for the failure message.
  for (const page of browser.contexts().flatMap((c) => c.pages())) {
    const shown = await page.textContent("#error").catch(() => null);
    console.error(`page ${page.url()}: error shown: ${shown}`);
    await page.screenshot({ path: join(shots, "failure.png"), fullPage: true }).catch(() => {});
  }
  console.error(problems.join("\n"));
  throw error;
} finally {
  await browser.close();
}
