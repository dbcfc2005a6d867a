// The dashboard in a real browser: Debian's chromium driven by playwright-core, against a real
// agent (the athena binary) that this script starts, stops and restarts.
//
//   DASHBOARD_AGENT_BIN   the athena binary (tests/dashboard.rs passes the one cargo built)
//   DASHBOARD_SCREENSHOTS where to write the screenshots (default: a temporary directory)
//   DASHBOARD_CHROMIUM    the browser (default /usr/bin/chromium)
//
// Every wait is on a condition, with a generous upper bound; nothing sleeps for a fixed time.
// The variables are not named ATHENA_*: the agent refuses environment variables with that
// prefix that are not configuration keys, and it inherits this environment.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { networkInterfaces, tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const TOKEN = "dashboard-test-token-0123456789";
const STREAM_INTERVAL_MS = 500;
const WAIT = 60_000;
const bin = process.env.DASHBOARD_AGENT_BIN;
const shots = process.env.DASHBOARD_SCREENSHOTS || mkdtempSync(join(tmpdir(), "athena-shots-"));
mkdirSync(shots, { recursive: true });

/** Starts `athena run` on `dataDir`; resolves with the process and its API's base URL. */
function startAgent(dataDir, bind) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("ATHENA_")));
  Object.assign(env, {
    ATHENA_API_BIND: bind,
    ATHENA_API_ADMIN_TOKEN: TOKEN,
    ATHENA_API_STREAM_INTERVAL: `${STREAM_INTERVAL_MS}ms`,
    // Trading within a second of the start, a tick every 15 ms of wall time.
    ATHENA_AGENT_OBSERVATION_PERIOD: "2h",
    ATHENA_AGENT_TIME_SCALE: "20000",
  });
  const child = spawn(bin, ["--data-dir", dataDir, "run"], { env, stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no API within ${WAIT} ms:\n${log}`)), WAIT);
    const seen = (chunk) => {
      log += chunk;
      const m = log.match(/athena: API on (http:\/\/[0-9.:]+)/);
      if (m) { clearTimeout(timer); resolve({ child, base: m[1], log: () => log }); }
    };
    child.stdout.on("data", seen);
    child.stderr.on("data", (c) => { log += c; });
    child.on("exit", (code) => { clearTimeout(timer); reject(new Error(`athena exited ${code}:\n${log}`)); });
  });
}

/** Stops the agent cleanly (SIGTERM) and waits for its exit. */
function stopAgent(agent) {
  return new Promise((resolve) => {
    agent.child.removeAllListeners("exit");
    agent.child.on("exit", (code) => resolve(code));
    agent.child.kill("SIGTERM");
  });
}

async function api(base, path, init) {
  const r = await fetch(base + path, init);
  return { status: r.status, body: await r.json().catch(() => null) };
}

/** Polls `path` until `ok(body)`. */
async function until(base, path, what, ok) {
  const started = Date.now();
  for (;;) {
    const { status, body } = await api(base, path);
    if (status === 200 && ok(body)) return body;
    if (Date.now() - started > WAIT) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(body).slice(0, 500)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Points each chart holds and coloured pixels its canvas shows, per series. */
function drawn(page) {
  return page.evaluate(() => {
    const out = {};
    for (const [name, u] of Object.entries(window.athena.charts)) {
      const canvas = u.ctx.canvas;
      const pixels = u.ctx.getImageData(0, 0, canvas.width, canvas.height).data;
      out[name] = u.series.slice(1).map((s, i) => {
        const points = u.data[i + 1].filter((v) => v != null).length;
        // Count pixels close to the series' stroke colour (#rrggbb).
        const hex = typeof s.stroke === "function" ? s.stroke(u, i + 1) : s.stroke;
        const [r, g, b] = [1, 3, 5].map((o) => parseInt(hex.slice(o, o + 2), 16));
        let painted = 0;
        for (let p = 0; p < pixels.length; p += 4) {
          if (pixels[p + 3] > 200 && Math.abs(pixels[p] - r) < 40 && Math.abs(pixels[p + 1] - g) < 40 && Math.abs(pixels[p + 2] - b) < 40) painted++;
        }
        return { label: s.label, points, painted };
      });
    }
    return out;
  });
}

test("the dashboard, in chromium, against a running agent", { timeout: 600_000 }, async (t) => {
  assert.ok(bin, "DASHBOARD_AGENT_BIN must name the athena binary");
  const dir = mkdtempSync(join(tmpdir(), "athena-dashboard-"));
  const data = join(dir, "data");
  let agent = await startAgent(data, "127.0.0.1:0");
  let browser;
  const problems = [];
  const watch = (page) => {
    page.on("console", (m) => { if (m.type() === "error") problems.push(`console: ${m.text()}`); });
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
    page.on("response", (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`); });
  };
  try {
    // playwright gives every launch a fresh, empty user data directory of its own.
    browser = await chromium.launch({
      executablePath: process.env.DASHBOARD_CHROMIUM || "/usr/bin/chromium",
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"],
    });
    await until(agent.base, "/trades", "a first trade", (b) => b.length > 0);
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    watch(page);

    await t.test("the page loads with no console error and no failed request", async () => {
      await page.goto(agent.base + "/", { waitUntil: "load" });
      await page.waitForFunction(() => document.getElementById("stream-state").dataset.state === "live", null, { timeout: WAIT });
      await page.waitForFunction(() => document.querySelectorAll("#journal li").length > 0, null, { timeout: WAIT });
      await page.waitForFunction(() => document.querySelectorAll("#positions tbody tr").length > 0, null, { timeout: WAIT });
      await page.waitForFunction(() => document.querySelectorAll("#breakers tbody tr").length === 8, null, { timeout: WAIT });
      // The six simulated pools, best APR first.
      await page.waitForFunction(() => document.querySelectorAll("#pools tbody tr").length === 6, null, { timeout: WAIT });
      // The advisor is off in the embedded defaults, and the panel says so.
      await page.waitForFunction(() => document.getElementById("llm").textContent.includes("off"), null, { timeout: WAIT });
      assert.deepEqual(problems, []);
    });

    await t.test("the equity chart and two others are drawn with data", async () => {
      // Enough ticks for lines worth counting, and the full series fetched at least once more.
      await page.waitForFunction(() => window.athena.state.equity.length >= 50 && window.athena.state.trades.length > 0, null, { timeout: WAIT });
      await page.waitForFunction(() => window.athena.charts.equity.data[2].some((v) => v != null), null, { timeout: WAIT });
      const d = await drawn(page);
      const [equity, fills] = d.equity;
      assert.ok(equity.points >= 50 && equity.painted > 100, `equity: ${JSON.stringify(equity)}`);
      assert.ok(fills.points >= 1 && fills.painted > 5, `fills marked: ${JSON.stringify(fills)}`);
      assert.ok(d.drawdown[0].points >= 50 && d.drawdown[0].painted > 100, `drawdown: ${JSON.stringify(d.drawdown)}`);
      const [score, gas] = d.risk;
      assert.ok(score.points >= 50 && score.painted > 50, `risk score: ${JSON.stringify(score)}`);
      assert.ok(gas.points >= 50 && gas.painted > 50, `gas: ${JSON.stringify(gas)}`);
    });

    await t.test("a value changes within a few stream intervals while the agent ticks", async () => {
      const before = await page.evaluate(() => ({ tick: document.getElementById("tick").textContent, events: window.athena.state.events.status }));
      await page.waitForFunction((b) => document.getElementById("tick").textContent !== b.tick, before, { timeout: WAIT });
      const events = await page.evaluate(() => window.athena.state.events.status);
      assert.ok(events - before.events <= 3, `the tick changed after ${events - before.events} status events`);
    });

    await t.test("opening a decision shows what the agent saw, the rule, the verdict with factors and caps, and what was done", async () => {
      await page.selectOption("#journal-kind", "decision");
      await page.waitForFunction(() => [...document.querySelectorAll("#journal li")].every((li) => li.dataset.kind === "decision") && document.querySelector("#journal li"), null, { timeout: WAIT });
      // The oldest decision in the list is an open the engine sized.
      await page.locator("#journal li").filter({ hasText: "executed" }).last().click();
      const detail = page.locator("#journal-detail");
      for (const heading of ["What the agent saw", "The rule that proposed it", "Risk verdict", "What was executed"]) {
        await detail.getByRole("heading", { name: heading }).waitFor({ timeout: WAIT });
      }
      const text = await detail.innerText();
      assert.match(text, /Pool APR\s+[\d.]+%/);
      assert.match(text, /Pool TVL\s+\$[\d,]+/);
      assert.match(text, /Gas\s+[\d.]+ gwei/);
      assert.match(await detail.locator("[data-rule]").innerText(), /^open: APR [\d.]+% above/);
      for (const factor of ["volatility", "concentration", "gas", "correlation", "recovery", "slippage"]) {
        assert.ok(await detail.locator("table.factors td", { hasText: factor }).count() >= 1, `factor ${factor}`);
      }
      assert.ok(await detail.locator("table.caps tbody tr").count() >= 4, "caps listed");
      assert.ok(await detail.locator("table.caps tr.binding").count() >= 1, "the binding cap marked");
      assert.match(await detail.locator("[data-executed]").innerText(), /^Executed \$/);
      // The README's picture (docs/dashboard.png is a copy): trading, a decision opened.
      await page.screenshot({ path: join(shots, "dashboard-1280x800.png"), fullPage: true });
    });

    await t.test("without the token the controls are disabled, and a wrong token is refused", async () => {
      assert.equal(await page.locator("#btn-stop").isDisabled(), true);
      assert.equal(await page.locator("#btn-exit-all").isDisabled(), true);
      assert.equal(await page.locator("#controls-lock").isVisible(), true);
      problems.length = 0;
      await page.fill("#token-input", "not-the-token-at-all-000");
      await page.click("#token-use");
      await page.fill("#control-reason", "wrong token");
      await page.click("#btn-stop");
      await page.waitForFunction(() => /^Refused/.test(document.getElementById("control-result").textContent), null, { timeout: WAIT });
      const risk = await api(agent.base, "/risk/status");
      assert.equal(risk.body.state.operator_stop, null);
      assert.ok(problems.every((p) => p.includes("401")), problems.join("\n"));
      problems.length = 0;
      await page.click("#token-forget");
      assert.equal(await page.locator("#btn-stop").isDisabled(), true);
    });

    await t.test("with the token, the stop button halts trading, and the stop is in the explorer", async () => {
      await page.fill("#token-input", TOKEN);
      await page.click("#token-use");
      assert.equal(await page.locator("#btn-stop").isDisabled(), false);
      await page.fill("#control-reason", "browser test stop");
      await page.click("#btn-stop");
      await page.waitForFunction(() => /^stop: /.test(document.getElementById("control-result").textContent), null, { timeout: WAIT });
      const risk = await api(agent.base, "/risk/status");
      assert.equal(risk.body.trading_state, "halted");
      assert.equal(risk.body.state.operator_stop.reason, "browser test stop");
      await page.selectOption("#journal-kind", "control");
      await page.locator("#journal li[data-kind=control]", { hasText: "browser test stop" }).first().waitFor({ timeout: WAIT });
      await page.waitForFunction(() => document.getElementById("trading-state").dataset.state === "halted", null, { timeout: WAIT });
      await page.screenshot({ path: join(shots, "dashboard-halted.png"), fullPage: true });
      // Resume through the page as well, so the rest of the run trades.
      await page.fill("#control-reason", "browser test resume");
      await page.click("#btn-resume");
      await page.waitForFunction(() => /^resume: /.test(document.getElementById("control-result").textContent), null, { timeout: WAIT });
      await until(agent.base, "/risk/status", "trading again", (b) => b.state.operator_stop === null);
      assert.deepEqual(problems, []);
    });

    await t.test("at a phone's width the page fits and the explorer works", async () => {
      const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
      const p = await phone.newPage();
      watch(p);
      problems.length = 0;
      await p.goto(agent.base + "/", { waitUntil: "load" });
      await p.waitForFunction(() => document.getElementById("stream-state").dataset.state === "live", null, { timeout: WAIT });
      await p.waitForFunction(() => window.athena.state.equity.length > 10 && document.querySelector("#journal li"), null, { timeout: WAIT });
      const overflow = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `the page is ${overflow}px wider than the phone`);
      await p.locator("#journal li").first().click();
      await p.locator("#journal-detail h3").first().waitFor({ timeout: WAIT });
      await p.screenshot({ path: join(shots, "dashboard-phone.png"), fullPage: true });
      assert.deepEqual(problems, []);
      await phone.close();
    });

    await t.test("losing the stream shows it, and the page reconnects when the agent returns", async () => {
      const port = new URL(agent.base).port;
      const lastTick = (await api(agent.base, "/status")).body.last_tick;
      assert.equal(await stopAgent(agent), 0, "a clean stop");
      await page.waitForFunction(() => document.getElementById("stream-state").dataset.state === "lost", null, { timeout: WAIT });
      assert.match(await page.locator("#stream-state").innerText(), /stream lost/);
      await page.evaluate(() => window.scrollTo(0, 0));
      await page.screenshot({ path: join(shots, "dashboard-stream-lost.png") });
      agent = await startAgent(data, `127.0.0.1:${port}`);
      await page.waitForFunction(() => document.getElementById("stream-state").dataset.state === "live", null, { timeout: WAIT });
      await page.waitForFunction((t) => {
        const m = document.getElementById("tick").textContent.match(/#(\d+)/);
        return m && Number(m[1]) > t;
      }, lastTick, { timeout: WAIT });
    });
    await t.test("a limit override and exit-all (after its confirm step) work from the page", async () => {
      // The token outlived the agent's restart: it is the tab's, not the agent's.
      assert.equal(await page.locator("#btn-override").isDisabled(), false);
      await page.fill("#control-reason", "browser test override");
      await page.selectOption("#override-limit", "risk.base_position_usd");
      await page.fill("#override-value", "400");
      await page.fill("#override-for", "1h");
      await page.click("#btn-override");
      await page.waitForFunction(() => /^override: /.test(document.getElementById("control-result").textContent), null, { timeout: WAIT });
      await page.locator("#overrides li", { hasText: "base_position_usd = 400" }).waitFor({ timeout: WAIT });
      await until(agent.base, "/positions", "open positions", (b) => b.length > 0);
      await page.fill("#control-reason", "browser test exit-all");
      await page.click("#btn-exit-all");
      assert.equal(await page.locator("#exit-confirm").isVisible(), true, "a confirm step first");
      assert.equal((await api(agent.base, "/risk/status")).body.state.operator_stop, null, "nothing sent before the confirm");
      await page.click("#btn-exit-confirm");
      await page.waitForFunction(() => /^exit_all: /.test(document.getElementById("control-result").textContent), null, { timeout: WAIT });
      await until(agent.base, "/positions", "every position closed", (b) => b.length === 0);
      await page.waitForFunction(() => document.querySelectorAll("#positions tbody tr").length === 0, null, { timeout: WAIT });
      await page.locator("#journal li[data-kind=control]", { hasText: "browser test exit-all" }).first().waitFor({ timeout: WAIT });
    });

    await t.test("older journal entries are one click away, newest first without gaps", async () => {
      // Halted, the agent journals its refused opens every tick: pages fill quickly.
      await until(agent.base, "/journal?kind=decision&limit=1000", "more than a page of decisions", (b) => b.length > 400);
      await page.selectOption("#journal-kind", "decision");
      await page.locator("#journal-older").waitFor({ state: "visible", timeout: WAIT });
      assert.equal(await page.locator("#journal li").count(), 200, "one page");
      await page.click("#journal-older");
      await page.waitForFunction(() => document.querySelectorAll("#journal li").length >= 400, null, { timeout: WAIT });
      const seqs = await page.$$eval("#journal li", (lis) => lis.map((li) => Number(li.dataset.seq)));
      assert.ok(seqs.every((s, i) => i === 0 || s < seqs[i - 1]), "newest first");
      const listed = (await api(agent.base, `/journal?kind=decision&limit=1000&before=${seqs[0] + 1}`)).body.map((e) => e.seq);
      assert.deepEqual(seqs, listed.slice(0, seqs.length), "the same entries as the API, none skipped");
      // While older pages are shown, newer entries wait behind a button instead of pushing them off.
      await page.locator("#journal-newer").waitFor({ state: "visible", timeout: WAIT });
      assert.equal(await page.locator("#journal li").count(), seqs.length, "nothing pushed off");
      await page.click("#journal-newer");
      await page.waitForFunction((top) => document.querySelectorAll("#journal li").length === 200 &&
        Number(document.querySelector("#journal li").dataset.seq) > top, seqs[0], { timeout: WAIT });
    });
    await t.test("from another address, reads need the token: the page says so, then uses it for reads and the stream", async () => {
      const ip = Object.values(networkInterfaces()).flat().find((i) => i && i.family === "IPv4" && !i.internal);
      assert.ok(ip, "this test needs a non-loopback IPv4 address on the machine");
      const remote = await startAgent(join(dir, "remote"), "0.0.0.0:0");
      try {
        const port = new URL(remote.base).port;
        const base = `http://${ip.address}:${port}`;
        assert.equal((await api(base, "/status")).status, 401, "reads off loopback need the token");
        const other = await browser.newContext({ viewport: { width: 1280, height: 800 } });
        const p = await other.newPage();
        await p.goto(base + "/", { waitUntil: "load" });
        await p.locator("#read-banner", { hasText: "reads need the admin token" }).waitFor({ timeout: WAIT });
        assert.notEqual(await p.locator("#stream-state").getAttribute("data-state"), "live");
        await p.fill("#token-input", TOKEN);
        await p.click("#token-use");
        await p.waitForFunction(() => document.getElementById("read-banner").hidden, null, { timeout: WAIT });
        await p.waitForFunction(() => document.getElementById("stream-state").dataset.state === "live", null, { timeout: WAIT });
        await p.waitForFunction(() => window.athena.state.events.status >= 2 && document.querySelectorAll("#breakers tbody tr").length === 8, null, { timeout: WAIT });
        // Forgetting the token closes the stream it opened: reads stop until it is entered again.
        await p.click("#token-forget");
        await p.waitForFunction(() => document.getElementById("stream-state").dataset.state !== "live", null, { timeout: WAIT });
        await p.locator("#read-banner", { hasText: "reads need the admin token" }).waitFor({ timeout: WAIT });
        await other.close();
      } finally {
        await stopAgent(remote);
      }
    });
    await context.close();
  } finally {
    await browser?.close();
    await stopAgent(agent);
    if (!process.env.DASHBOARD_KEEP) rmSync(dir, { recursive: true, force: true });
    console.log(`screenshots in ${shots}`);
  }
});
