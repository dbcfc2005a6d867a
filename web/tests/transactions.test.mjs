// The dashboard's on-chain view in a real browser (Debian's chromium, playwright-core), against
// an agent trading on the devnet that tests/chain_exec.rs started and left holding still (after
// an exit-all): every transaction `/chain/transactions` lists is a row of "Transactions on
// chain" with its hash and state, and the page raises no error.
//
//   DASHBOARD_AGENT_URL   the running agent's API
//   DASHBOARD_CHROMIUM    the browser (default /usr/bin/chromium)
import { test } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const base = process.env.DASHBOARD_AGENT_URL;
const WAIT = 60_000;

test("the dashboard lists the chain executor's transactions with their hashes", async () => {
  const txs = await (await fetch(`${base}/chain/transactions?limit=50`)).json();
  assert.ok(txs.length > 0, "the agent has sent transactions");
  const browser = await chromium.launch({
    executablePath: process.env.DASHBOARD_CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"],
  });
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
    await page.goto(base);
    await page.waitForFunction(
      (hashes) => hashes.every((h) => document.querySelector(`#transactions code[title="${h}"]`)),
      txs.map((t) => t.hash), { timeout: WAIT });
    for (const t of txs) {
      const row = page.locator("#transactions tbody tr", { has: page.locator(`code[title="${t.hash}"]`) });
      const cells = await row.locator("td").allTextContents();
      assert.equal(cells[0], String(t.nonce), `nonce of ${t.hash}`);
      assert.equal(cells[1], t.state, `state of ${t.hash}`);
    }
    assert.match(await page.locator("#transactions-note").textContent(), /written to the store before it is broadcast/);
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});
