/**
 * The dashboard in a real browser: Debian's Chromium driven by playwright-core against a real
 * 3-node cluster. It sees every member and one leader, writes a key through the page, and sees
 * a new leader after the old one is killed. Screenshots go to $RAFTKV_ARTIFACTS_DIR (default
 * $TMPDIR/raftkv-artifacts, overwritten by each run).
 *
 * Needs Chromium at /usr/bin/chromium (or $RAFTKV_CHROMIUM): `apt-get install -y chromium`.
 * Without it the test is skipped, and its name says why.
 */
import assert from "node:assert/strict";
import { type Browser, chromium, type Page } from "npm:playwright-core@1.64.1";
import { Cluster, httpRequest, type NodeProcess } from "../e2e/_harness.ts";

const CHROMIUM_PATH = Deno.env.get("RAFTKV_CHROMIUM") ?? "/usr/bin/chromium";
/** As root on a machine with no internet: no sandbox, and no background calls to Google. */
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const VIEWPORT = { width: 1280, height: 800 };
const PAGE_WAIT_MS = 20_000;
/** Election after a SIGKILL: timeout 1 s in the harness, then the page's 1 s poll. Generous. */
const NEW_LEADER_WAIT_MS = 30_000;

async function fileExists(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

const chromiumFound = await fileExists(CHROMIUM_PATH);
const testName = "dashboard shows members and one leader, writes a key, and follows a failover";

async function artifactsDir(): Promise<string> {
  const tmp = Deno.env.get("TMPDIR") ?? "/tmp";
  const dir = Deno.env.get("RAFTKV_ARTIFACTS_DIR") ?? `${tmp}/raftkv-artifacts`;
  await Deno.mkdir(dir, { recursive: true });
  return dir;
}

async function nodeId(node: NodeProcess): Promise<string> {
  const id = (await node.status()).id;
  assert.equal(typeof id, "string", `${node.url}/status has no id`);
  return id as string;
}

/** The page's callbacks run in Chromium, where `document` exists; Deno's types lack the DOM. */
interface PageElement {
  dataset: Record<string, string | undefined>;
  classList: { contains(name: string): boolean };
  textContent: string | null;
}
declare const document: {
  querySelectorAll(selector: string): Iterable<PageElement>;
  querySelector(selector: string): PageElement | null;
};

/** What the page shows: one entry per member row, read from its data attributes. */
function memberRows(page: Page) {
  return page.evaluate(() =>
    [...document.querySelectorAll("#members-body tr[data-member-id]")].map((row) => ({
      id: row.dataset.memberId ?? "",
      role: row.dataset.role ?? "",
      reachable: row.dataset.reachable === "true",
      leader: row.classList.contains("leader"),
    }))
  );
}

/** Waits until the page shows `count` member rows and exactly one leader row, other than
 * `notId`; returns that leader's id. */
async function waitForLeaderRow(
  page: Page,
  options: { count: number; notId?: string; timeoutMs: number },
): Promise<string> {
  const handle = await page.waitForFunction(
    ({ count, notId }) => {
      const rows = [...document.querySelectorAll("#members-body tr[data-member-id]")];
      const leaders = rows.filter((row) => row.classList.contains("leader"));
      if (rows.length !== count || leaders.length !== 1) return false;
      const id = leaders[0].dataset.memberId;
      return id !== notId ? id : false;
    },
    { count: options.count, notId: options.notId ?? null },
    { timeout: options.timeoutMs, polling: 200 },
  );
  return await handle.jsonValue() as string;
}

async function setKeyThroughPage(page: Page, key: string, value: string): Promise<string> {
  await page.fill("#kv-key", key);
  await page.fill("#kv-value", value);
  await page.click("#kv-set");
  await page.waitForSelector('#kv-result[data-state="ok"]', { timeout: PAGE_WAIT_MS });
  await page.click("#kv-get");
  await page.waitForFunction(
    (expected) => document.querySelector("#kv-result .value")?.textContent === expected,
    JSON.stringify(value),
    { timeout: PAGE_WAIT_MS },
  );
  return await page.textContent("#kv-result") ?? "";
}

async function screenshot(page: Page, name: string): Promise<string> {
  const path = `${await artifactsDir()}/${name}`;
  await page.screenshot({ path });
  // deno-lint-ignore no-console
  console.log(`dashboard screenshot: ${path}`);
  return path;
}

async function runScenario(cluster: Cluster, browser: Browser): Promise<void> {
  const leader = await cluster.leader();
  const leaderId = await nodeId(leader);
  // Served by a follower, so that the page outlives the leader it will watch die.
  const served = cluster.followers(leader)[0];
  const page = await browser.newPage({ viewport: VIEWPORT });
  const pageErrors: string[] = [];
  page.on("pageerror", (error) => pageErrors.push(error.message));
  await page.goto(`${served.url}/ui`);

  const shownLeader = await waitForLeaderRow(page, { count: 3, timeoutMs: PAGE_WAIT_MS });
  assert.equal(shownLeader, leaderId, "the highlighted member is the leader");
  const rows = await memberRows(page);
  assert.deepEqual(rows.map((row) => row.reachable), [true, true, true]);
  assert.equal(rows.filter((row) => row.role === "leader").length, 1);

  const key = "dashboard-key";
  const value = "set through the page";
  const shown = await setKeyThroughPage(page, key, value);
  assert.match(shown, /set through the page/);
  const read = await httpRequest(`${leader.url}/get?key=${key}`);
  assert.equal(read.status, 200, read.text);
  assert.equal(read.json?.value, value, "the API reads what the page wrote");
  await screenshot(page, "dashboard-healthy.png");

  await leader.kill();
  const newLeaderId = await waitForLeaderRow(page, {
    count: 3,
    notId: leaderId,
    timeoutMs: NEW_LEADER_WAIT_MS,
  });
  assert.notEqual(newLeaderId, leaderId);
  await page.waitForSelector(`tr[data-member-id="${leaderId}"][data-reachable="false"]`, {
    timeout: PAGE_WAIT_MS,
  });
  assert.match(await page.textContent("#live-text") ?? "", /live/);
  await screenshot(page, "dashboard.png");
  assert.deepEqual(pageErrors, [], "the page threw no errors");
}

Deno.test({
  name: chromiumFound ? testName : `${testName} (skipped: no Chromium at "${CHROMIUM_PATH}")`,
  ignore: !chromiumFound,
  // playwright-core keeps its pipe to Chromium and some timers until the browser is closed.
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const cluster = await Cluster.start(3);
    let browser: Browser | undefined;
    try {
      // launch() gives Chromium a fresh --user-data-dir of its own and removes it on close.
      browser = await chromium.launch({
        executablePath: CHROMIUM_PATH,
        headless: true,
        args: CHROMIUM_ARGS,
      });
      await runScenario(cluster, browser);
    } catch (error) {
      throw new Error(`${(error as Error).stack}\n${cluster.logs()}`);
    } finally {
      await browser?.close();
      await cluster.destroy();
    }
  },
});
