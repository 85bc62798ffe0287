// The status page in Debian's headless Chromium, driven by a test over stdin/stdout:
//   node status-page.mjs URL CLUSTER
// prints `rendered` once the page shows CLUSTER in its normal state, waits for a line on
// stdin (the test stopped the active endpoint), then for the page to show the failover on
// its own (no reload), and prints `failover`. Exits 1 on any console error, page error or
// failed request, or when a wait times out (15 s each).
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";

const [url, cluster] = process.argv.slice(2);
const problems = [];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage();
  page.on("console", (m) => { if (m.type() === "error" || m.type() === "warning") problems.push(`console ${m.type()}: ${m.text()}`); });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  await page.goto(url);
  const clusterState = () => page.locator("#clusters tbody tr").filter({ hasText: cluster }).first();
  await clusterState().filter({ hasText: "normal" }).waitFor({ timeout: 15000 });
  const title = await page.title();
  const listeners = await page.locator("#listeners tbody tr").count();
  const endpoints = await page.locator("#clusters tbody tr").count();
  const connections = await page.locator("#connections tbody tr").count();
  console.log(`rendered ${JSON.stringify({ title, listeners, endpoints, connections })}`);

  const stdin = createInterface({ input: process.stdin });
  await new Promise((resolve) => stdin.once("line", resolve));
  await clusterState().filter({ hasText: "FAILED OVER" }).waitFor({ timeout: 15000 });
  const down = await page.locator("#clusters td.down").count();
  console.log(`failover ${JSON.stringify({ down })}`);
  stdin.close();
} catch (e) {
  problems.push(`${e.name}: ${e.message}`);
} finally {
  await browser.close();
}
if (problems.length) {
  console.log(`problems ${JSON.stringify(problems)}`);
  process.exit(1);
}
console.log("ok");
