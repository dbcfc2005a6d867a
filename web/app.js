// Athena's dashboard. It reads the agent's HTTP API and follows its live stream (/stream,
// server-sent events read through fetch so the admin token can go in a header when reads need
// it). The admin token is kept in sessionStorage: this tab only, gone when it closes.
// Nothing here decides anything: every control is a POST the agent applies between ticks and
// journals, and the page shows what the agent answered.
"use strict";

const TOKEN_KEY = "athena-admin-token";
const EQUITY_POINTS = 2000;
const JOURNAL_LIMIT = 200;
const RECONNECT_MAX_MS = 10000;
const SILENCE_MS = 20000; // the server sends a keep-alive every 15 s

const $ = (id) => document.getElementById(id);

// ---- Formatting -------------------------------------------------------------------------

const usd = (v) => v == null || !isFinite(v) ? "–" :
  (v < 0 ? "−$" : "$") + Math.abs(v).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const num = (v, d = 2) => v == null || !isFinite(v) ? "–" : Number(v).toFixed(d);
const pct = (v, d = 1) => v == null || !isFinite(v) ? "–" : `${Number(v).toFixed(d)}%`;
const wholeUsd = (v) => (v < -0.5 ? "−$" : "$") + Math.abs(Math.round(v)).toLocaleString("en-US");
const signed = (v) => v == null || !isFinite(v) ? "" : v >= 0 ? "pos" : "neg";
const time = (ms) => ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 16) + " UTC" : "–";
const shortHash = (h) => `${h.slice(0, 10)}…${h.slice(-6)}`;
function duration(ms) {
  if (ms == null || !isFinite(ms)) return "–";
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60), h = Math.floor(m / 60), d = Math.floor(h / 24);
  if (d > 0) return `${d}d ${h % 24}h`;
  if (h > 0) return `${h}h ${m % 60}m`;
  return `${m}m ${s % 60}s`;
}

/** An element with text content or children. */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null) continue;
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c == null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}
function fillKv(dl, pairs) {
  dl.replaceChildren(...pairs.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}
/** A cell left out at a phone's width. */
const optional = (text) => ({ optional: text });
function fillRows(tbody, rows) {
  tbody.replaceChildren(...rows.map((cells) => el("tr", {}, cells.map((c) =>
    c != null && c.optional !== undefined ? el("td", { class: "opt" }, c.optional) : el("td", {}, c)))));
}

// ---- The API ----------------------------------------------------------------------------

const token = () => sessionStorage.getItem(TOKEN_KEY);

function headers(json) {
  const h = {};
  if (json) h["Content-Type"] = "application/json";
  const t = token();
  if (t) h.Authorization = `Bearer ${t}`;
  return h;
}

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function request(method, path, body) {
  let response;
  try {
    response = await fetch(path, {
      method, headers: headers(body !== undefined),
      body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store",
    });
  } catch (e) {
    throw new ApiError(0, "unreachable", "the agent cannot be reached");
  }
  const text = await response.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!response.ok) {
    const err = json && json.error;
    throw new ApiError(response.status, err ? err.code : "http", err ? err.message : `HTTP ${response.status}`);
  }
  return json;
}
const get = (path) => request("GET", path);
const post = (path, body) => request("POST", path, body);

// ---- State --------------------------------------------------------------------------------

const state = {
  status: null,          // the last status event (or /status)
  equity: [],            // EquityPoint[], oldest first
  trades: [],            // /trades, newest first
  startingUsd: null,     // equity − PnL
  journal: [],           // JournalEntry[], newest first, as filtered
  journalPages: 1,       // pages of JOURNAL_LIMIT entries the list shows
  journalNewer: 0,       // entries streamed in while older pages are shown
  readsNeedToken: false, // a read was refused for want of the token (not on loopback)
  selectedSeq: null,
  limits: [],
  breakers: [],
  refreshing: false,
  refreshAgain: false,
  refreshes: 0,
  tradesDirty: false,    // a decision or control may have filled: fetch /trades again
  resample: false,       // fetch the whole (thinned) series again
  equityQueue: Promise.resolve(), // stream points are added one after another
  events: { status: 0, equity: 0, journal: 0, alert: 0 }, // stream events received
};

// ---- Charts (uPlot) -----------------------------------------------------------------------

const charts = {};
const zoomed = {};

function chartOptions(name, series, axes, scales = {}) {
  return {
    width: 600, height: 220, series: [{}, ...series], axes, scales: { x: { time: true }, ...scales },
    cursor: { drag: { x: true, y: false } },
    legend: { live: true },
    hooks: {
      setSelect: [() => { zoomed[name] = true; }],
      ready: [(u) => u.over.addEventListener("dblclick", () => { zoomed[name] = false; })],
    },
  };
}

function makeCharts() {
  const money = (u, ticks) => ticks.map(wholeUsd);
  // A flat series still gets a readable scale: at least ±0.1% of its value around it.
  const around = (u, min, max) => {
    const pad = Math.max((max - min) * 0.05, Math.abs(max) * 0.001, 1);
    return [min - pad, max + pad];
  };
  charts.equity = new uPlot(chartOptions("equity", [
    { label: "Equity", stroke: "#2b6cb0", width: 2, value: (u, v) => usd(v) },
    { label: "Fills", stroke: "#c53030", fill: "#c53030", paths: () => null,
      points: { show: true, size: 8, stroke: "#c53030", fill: "#fff" }, value: (u, v) => v == null ? "" : usd(v) },
  ], [
    {},
    { values: money, size: 80 },
    { side: 1, size: 80, scale: "y", grid: { show: false },
      values: (u, ticks) => ticks.map((v) => state.startingUsd == null ? "" : wholeUsd(v - state.startingUsd)) },
  ], { y: { range: around } }), [[], [], []], $("chart-equity"));
  charts.drawdown = new uPlot(chartOptions("drawdown", [
    { label: "Drawdown", stroke: "#c53030", fill: "rgba(197,48,48,.12)", width: 1.5, value: (u, v) => pct(v, 2) },
  ], [{}, { values: (u, t) => t.map((v) => `${v.toFixed(Math.min(...t) > -1 ? 2 : 1)}%`), size: 60 }],
  { y: { range: (u, min, max) => [Math.min(min, -0.1), 0] } }), [[], []], $("chart-drawdown"));
  charts.risk = new uPlot(chartOptions("risk", [
    { label: "Risk score", stroke: "#b7791f", width: 1.5, scale: "score", value: (u, v) => num(v, 1) },
    { label: "Gas (gwei)", stroke: "#6b46c1", width: 1, scale: "gwei", value: (u, v) => num(v, 3) },
  ], [
    {},
    { scale: "score", size: 50 },
    { scale: "gwei", side: 1, size: 60, grid: { show: false } },
  ], { score: { range: [0, 100] }, gwei: { range: (u, min, max) => [0, Math.max(max, 0.001) * 1.1] } }),
  [[], [], []], $("chart-risk"));
  const resize = new ResizeObserver(() => {
    for (const [id, chart] of Object.entries(charts)) {
      const box = $(`chart-${id}`);
      chart.setSize({ width: Math.max(200, box.clientWidth), height: 220 });
    }
  });
  for (const id of Object.keys(charts)) resize.observe($(`chart-${id}`));
}

/** The index of the equity point at or just after `atMs` (the series is sorted by time). */
function pointAt(xs, atSec) {
  let lo = 0, hi = xs.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid] < atSec) lo = mid + 1; else hi = mid;
  }
  return lo;
}

function drawCharts() {
  const pts = state.equity;
  const xs = pts.map((p) => p.at_ms / 1000);
  const equity = pts.map((p) => p.equity_usd);
  const fills = new Array(pts.length).fill(null);
  if (pts.length) {
    for (const t of state.trades) {
      const at = t.entry.at_ms / 1000;
      if (at < xs[0] || at > xs[xs.length - 1]) continue;
      const i = pointAt(xs, at);
      fills[i] = equity[i];
    }
  }
  let peak = -Infinity;
  const drawdown = equity.map((v) => { peak = Math.max(peak, v); return peak > 0 ? 100 * (v / peak - 1) : 0; });
  const score = pts.map((p) => p.risk_score);
  const gas = pts.map((p) => p.gas_gwei ?? null);
  const set = (name, data) => charts[name].setData(data, !zoomed[name]);
  set("equity", [xs, equity, fills]);
  set("drawdown", [xs, drawdown]);
  set("risk", [xs, score, gas]);
  const last = pts[pts.length - 1];
  const figures = [
    ["Equity", usd(last ? last.equity_usd : state.status && state.status.equity_usd)],
    ["PnL", state.startingUsd == null || !last ? "–" : usd(last.equity_usd - state.startingUsd)],
    ["Max drawdown (all time)", state.status ? pct(state.status.totals.max_drawdown_pct, 2) : "–"],
    ["Trades", state.status ? state.status.totals.trades : "–"],
    ["Points", pts.length],
  ];
  $("equity-figures").replaceChildren(...figures.map(([k, v]) => el("span", {}, `${k} `, el("b", {}, v))));
}

/** Adds the stream's newest point; when ticks were skipped between two events (a fast
 *  simulated clock), the points between are fetched first, so the series stays per tick. */
async function addEquityPoint(p) {
  const last = state.equity[state.equity.length - 1];
  if (last && p.tick <= last.tick) return;
  if (last && p.tick > last.tick + 1) {
    try {
      const secs = Math.ceil((p.at_ms - last.at_ms) / 1000) + 1;
      appendPoints(await get(`/equity?since=${secs}s&points=${EQUITY_POINTS}`));
    } catch (e) {
      readFailed(e);
    }
  }
  appendPoints([p]);
}

function appendPoints(points) {
  for (const q of points) {
    const last = state.equity[state.equity.length - 1];
    if (!last || q.tick > last.tick) state.equity.push(q);
  }
  // Past this many points the whole run is fetched again, evenly thinned by the agent.
  if (state.equity.length > 4 * EQUITY_POINTS) state.resample = true;
  drawCharts();
}

// ---- Panels -------------------------------------------------------------------------------

function renderStatus(s) {
  state.status = s;
  const badge = $("trading-state");
  badge.textContent = s.trading_state.replace("_", "-");
  badge.dataset.state = s.trading_state;
  $("tick").textContent = `tick #${s.last_tick} · agent time ${time(s.last_tick_ms)}`;
  fillRows($("positions").querySelector("tbody"), s.positions.map((p) => {
    const pnl = p.value_usd + p.rewards_usd - p.deposited_usd - p.costs_usd;
    return [p.pool, usd(p.deposited_usd), usd(p.value_usd), optional(usd(p.fees_usd)), optional(usd(p.rewards_usd)),
      el("span", { class: signed(pnl) }, usd(pnl)), duration(s.last_tick_ms - p.opened_ms), optional(pct(p.entry_apr_pct))];
  }));
  $("positions-note").textContent = s.positions.length
    ? `Cash ${usd(s.cash_usd)}. PnL = value now (with fees) + rewards − deposit − entry costs.`
    : s.last_tick_ms < s.observation_end_ms
      ? `No positions: observing until ${time(s.observation_end_ms)}.` : "No positions.";
}

function renderPools(pools) {
  fillRows($("pools").querySelector("tbody"), pools.map((p) => [
    p.pool, pct(p.apr_pct), usd(p.tvl_usd), optional(usd(p.volume_24h_usd)), p.held_usd > 0 ? usd(p.held_usd) : "–",
    optional([p.stable ? "stable" : "", p.guarded ? "re-entry guarded" : ""].filter(Boolean).join(", ")),
  ]));
}

/** The chain executor's transactions, newest first: each was written down before it was sent. */
function renderTransactions(txs) {
  fillRows($("transactions").querySelector("tbody"), txs.map((t) => [
    t.nonce, el("span", { class: t.state === "reverted" || t.state === "dropped" ? "neg" : "" }, t.state),
    t.step ? t.step.replaceAll("_", " ") : "–", t.position || "–", el("code", { title: t.hash }, shortHash(t.hash)),
    optional(t.block ?? "–"), optional(t.gas_used ?? "–"), optional(new Date(t.signed_ms).toISOString().slice(11, 19)),
  ]));
  $("transactions-note").textContent = txs.length
    ? "Newest first. Each transaction is written to the store before it is broadcast; a reverted one fills nothing and costs its gas."
    : "None: the paper executor sends no transactions.";
}


function renderRisk(r) {
  const st = r.state;
  state.breakers = st.breakers.map((b) => b.kind);
  fillKv($("risk-state"), [
    ["Trading state", r.trading_state],
    ["Operator stop", st.operator_stop ? `since ${time(st.operator_stop.at_ms)}: ${st.operator_stop.reason}` : "none"],
    ["Restart hold", st.restart_hold || "none"],
  ]);
  fillRows($("breakers").querySelector("tbody"), st.breakers.map((b) => {
    const t = b.tripped;
    const cell = t
      ? el("span", { class: "tripped" }, `tripped ${time(t.at_ms)}${t.until_ms ? `, until ${time(t.until_ms)}` : ", until reset"}: ${t.reason}`)
      : el("span", { class: "armed" }, "armed");
    return [b.kind, cell, b.trip_count];
  }));
  $("overrides").replaceChildren(...(st.overrides.length ? st.overrides.map((o) =>
    el("li", {}, `${o.limit} = ${o.value} until ${time(o.until_ms)}: ${o.reason}`)) : [el("li", { class: "muted" }, "none")]));
  const s = r.score;
  const parts = [["Concentration", s.concentration], ["Volatility", s.volatility], ["Liquidity", s.liquidity], ["Correlation", s.correlation]];
  $("score").replaceChildren(
    el("p", {}, el("b", {}, num(s.total, 1)), ` / 100 · ${s.level}`),
    ...parts.map(([k, v]) => {
      const fill = el("div", { class: "fill" });
      fill.style.width = `${Math.min(100, (v / 25) * 100)}%`;
      return el("div", { class: "bar" }, el("span", {}, k), el("div", { class: "track" }, fill), el("span", {}, num(v, 1)));
    }));
  fillSelect($("reset-breaker"), state.breakers);
}

function renderGas(g) {
  fillKv($("gas"), [
    ["Now", `${num(g.gwei, 3)} gwei`],
    ["Median", `${num(g.median_gwei, 3)} gwei`],
    ["Verdict", `${g.action}: ${g.reason}`],
    ["Budget used today", `${usd(g.spent_today_usd)} of ${usd(g.daily_budget_usd)}`],
  ]);
}

function renderSync(s) {
  fillKv($("sync"), [
    ["Queue depth", `${s.queue_depth} (documents ${s.documents.pending}, objects ${s.objects.pending})`],
    ["Lag", duration(Math.max(s.documents.lag_ms, s.objects.lag_ms))],
    ["Oldest unsynced", s.queue_depth ? `${duration(s.oldest_unsynced_ms)} ago` : "nothing waiting"],
    ["Dead letters", s.dead_letters],
    ["Writes sent", `${s.document_writes} documents, ${s.object_writes} objects`],
    ["Rows coalesced", `${s.rows_coalesced} (delivered ${s.rows_delivered}, compacted ${s.rows_compacted})`],
    ["Estimated cost", usd(s.estimated_cost_usd)],
    ["Last delivery", s.last_pass_ms ? time(s.last_pass_ms) : "nothing delivered yet"],
    ["Last error", s.health.last_error ? `${s.health.last_error} (${s.health.consecutive_failures} in a row)` : "none"],
  ]);
}

function renderLlm(l) {
  const body = $("llm-layers").querySelector("tbody");
  if (!l) {
    fillKv($("llm"), [["", "off (llm.enabled = false): the rules decide alone"]]);
    fillRows(body, []);
    return;
  }
  const m = l.model;
  const served = l.template.hits + l.exact.hits + l.slot.hits;
  fillKv($("llm"), [
    ["Questions", `${l.questions} (${l.questions ? Math.round(100 * served / l.questions) : 0}% answered without the model)`],
    ["Model calls", `${m.calls} for ${m.answers} answers (${m.batched_calls} batched, ${m.batch_fallbacks} batch replies asked again one by one)`],
    ["Fewer calls", l.questions ? `${Math.round(100 * (1 - m.calls / l.questions))}% than one call per question` : "no question yet"],
    ["Tokens", `${m.prompt_tokens.toLocaleString("en-US")} prompt, ${m.reply_tokens.toLocaleString("en-US")} reply`],
    ["Spent", usd(m.usd_spent)],
    ["Vetoes", l.vetoes],
    ["Left to the rules", `${l.unanswered} (${m.timeouts} timeouts, ${m.failures} failures)`],
  ]);
  fillRows(body, [["templates", l.template], ["exact cache", l.exact], ["slot cache", l.slot],
    ["compression", l.compression], ["batching", l.batching]].map(([name, x]) =>
    [name, x.hits, x.misses, x.tokens_saved.toLocaleString("en-US"), usd(x.usd_saved)]));
}

function renderMemories(m) {
  fillRows($("memories").querySelector("tbody"), Object.entries(m.by_category).map(([cat, t]) =>
    [cat.replaceAll("_", " "), t.hot, t.warm, t.cold]));
  fillKv($("memory-totals"), [
    ["Total", `${m.total.hot} hot, ${m.total.warm} warm, ${m.total.cold} cold`],
    ["By type", Object.entries(m.by_type).map(([k, v]) => `${k} ${v}`).join(", ") || "none"],
    ["Local bytes", m.local_bytes.toLocaleString("en-US")],
    ["Cold segments", `${m.segments} (${m.segment_bytes.toLocaleString("en-US")} bytes)`],
  ]);
  const p = m.last_prune;
  fillKv($("prune"), p ? [
    ["Finished", time(p.at_wall_ms)],
    ["Took", `${p.report.duration_ms} ms`],
    ["Removed", `${p.report.removed_low_confidence} low-confidence, ${p.report.expired} expired, ${p.report.evicted} evicted`],
    ["Merged / compacted", `${p.report.merged} / ${p.report.compacted}`],
    ["To cold", `${p.report.migrated_cold} (${p.report.segments_written} segments)`],
    ["Reclaimed", `${p.report.bytes_reclaimed.toLocaleString("en-US")} bytes`],
  ] : [["", "no pruning pass in this run yet"]]);
}

function renderRecovery(rec, checkpoints) {
  const newest = checkpoints.slice(-5).reverse();
  $("checkpoints").replaceChildren(...(newest.length ? newest.map((c) =>
    el("li", {}, `${c.id}: tick ${c.tick}, ${c.bytes.toLocaleString("en-US")} bytes, ${time(c.created_ms)}`))
    : [el("li", { class: "muted" }, "no checkpoint yet")]));
  if (!rec) {
    $("recovery").replaceChildren(el("p", { class: "muted" }, "No crash recovery recorded."));
    return;
  }
  $("recovery").replaceChildren(
    el("p", {}, `${time(rec.wall_ms)}: ${rec.cause}`),
    el("ol", {}, rec.steps.map((s) => el("li", {}, `${s.name} (${num(s.ms, 1)} ms): ${s.detail}`))));
}

function renderAlerts(alerts) {
  $("alerts").replaceChildren(...(alerts.length ? alerts.slice().reverse().slice(0, 30).map(alertItem)
    : [el("li", { class: "muted" }, "no alerts")]));
}
function alertItem(a) {
  return el("li", { class: `sev-${a.severity}` }, `${time(a.at_wall_ms)} ${a.severity}: ${a.message}`);
}

function fillSelect(select, values) {
  const current = select.value;
  if (select.options.length === values.length && [...select.options].every((o, i) => o.value === values[i])) return;
  select.replaceChildren(...values.map((v) => el("option", { value: v }, v)));
  if (values.includes(current)) select.value = current;
}

// ---- Decision explorer --------------------------------------------------------------------

function journalQuery() {
  const q = new URLSearchParams({ limit: String(JOURNAL_LIMIT) });
  if ($("journal-kind").value) q.set("kind", $("journal-kind").value);
  if ($("journal-pool").value.trim()) q.set("pool", $("journal-pool").value.trim());
  return `/journal?${q}`;
}

function matchesFilter(entry) {
  const kind = $("journal-kind").value, pool = $("journal-pool").value.trim();
  return (!kind || entry.kind === kind) && (!pool || entry.pool === pool);
}

function renderJournal() {
  $("journal").replaceChildren(...state.journal.map((e) => {
    const li = el("li", { "data-seq": e.seq, "data-kind": e.kind || "unreadable",
      "aria-selected": String(e.seq === state.selectedSeq), tabindex: "0" },
      el("span", { class: "kind" }, e.kind || "unreadable"), " ", time(e.at_ms), " ", el("br"),
      e.summary || e.error);
    li.addEventListener("click", () => openEntry(e.seq));
    li.addEventListener("keydown", (ev) => { if (ev.key === "Enter") openEntry(e.seq); });
    return li;
  }));
}

function addJournal(entries) {
  const fresh = entries.filter(matchesFilter).reverse(); // the stream sends oldest first
  if (!fresh.length) return;
  if (state.journalPages > 1) {
    // Older pages are being read: nothing they show is pushed off; the new entries wait.
    state.journalNewer += fresh.length;
    $("journal-newer").hidden = false;
    $("journal-newer").textContent = `${state.journalNewer} newer entries: show the newest`;
    return;
  }
  const known = new Set(state.journal.map((e) => e.seq));
  state.journal = [...fresh.filter((e) => !known.has(e.seq)), ...state.journal];
  // The first page stays a page; what falls off its end is one "Older entries" away.
  if (state.journal.length > JOURNAL_LIMIT) {
    state.journal.length = JOURNAL_LIMIT;
    $("journal-older").hidden = false;
  }
  renderJournal();
}

function openEntry(seq) {
  const e = state.journal.find((x) => x.seq === seq);
  if (!e) return;
  state.selectedSeq = seq;
  renderJournal();
  $("journal-detail").replaceChildren(...explain(e));
}

const WHAT_HAPPENED = {
  risk: "What the risk engine did", control: "What the operator asked", data: "The pool snapshot left out",
};

function section(title, ...content) { return [el("h3", {}, title), ...content.filter((c) => c != null)]; }

/** What an entry says, laid out to answer "why did it do that?". */
function explain(e) {
  if (!e.record) return [el("p", { class: "neg" }, `Unreadable entry #${e.seq}: ${e.error}`)];
  const [type, r] = Object.entries(e.record)[0];
  const raw = el("details", {}, el("summary", {}, "Record as journaled"), el("pre", {}, JSON.stringify(e.record, null, 2)));
  const head = el("p", {}, el("b", {}, `#${e.seq} · ${time(e.at_ms)}`), el("br"), e.summary);
  if (type !== "decision") {
    const parts = [head, ...section(WHAT_HAPPENED[e.kind] || "What happened", el("p", {}, e.summary))];
    if (e.kind === "control" && /^exit all/.test(e.summary)) parts.push(...exitAllFills(e));
    return [...parts, raw];
  }
  const dl = el("dl", { class: "kv" });
  fillKv(dl, [
    ["Pool APR", pct(r.apr_pct, 2)], ["Pool TVL", usd(r.tvl_usd)],
    ["Gas", r.gas_gwei == null ? "not journaled" : `${num(r.gas_gwei, 3)} gwei`],
    ["Transaction gas", r.gas_usd == null ? "not journaled" : usd(r.gas_usd)],
    ["Trading state", r.trading_state],
  ]);
  const [verdict, v] = Object.entries(r.decision)[0];
  const verdictText = verdict === "Reject" ? `Rejected by ${v.rule}: ${v.reason}`
    : verdict === "Reduce" ? `Reduced to ${usd(v.size_usd)} from ${usd(v.requested_usd)}`
      : v.size_usd > 0 ? `Approved at ${usd(v.size_usd)}` : "Approved (an exit, as asked)";
  const verdictParts = [el("p", { "data-verdict": verdict }, verdictText, ` · gas protection: ${r.gas}`)];
  if (v.bounded_by && v.bounded_by.length) verdictParts.push(el("p", {}, `Bound by: ${v.bounded_by.join(", ")}`));
  if (r.sizing) verdictParts.push(...sizingTables(r.sizing, v, (e.pool || "").split("/")));
  const done = r.executed_usd != null
    ? `Executed ${usd(r.executed_usd)}${"rebalance" in r.intent ? " (the close and the open together)" : ""}`
    : r.note ? `Not executed: ${r.note}` : "Not executed";
  const positions = intentPositions(r.intent);
  const fills = state.trades.filter((t) => t.entry.tick === r.tick &&
    (t.entry.pool === e.pool || positions.includes(t.entry.position))).reverse(); // in order
  return [
    head,
    ...section("What the agent saw", dl),
    ...section("The rule that proposed it", el("p", { "data-rule": "" }, r.rule || intentText(r.intent))),
    ...(r.advice ? section("The LLM advisor", el("p", { "data-advice": r.advice.verdict },
      `${r.advice.verdict} · size factor ${r.advice.size_factor} · priority ${r.advice.priority} · from ${r.advice.source.replaceAll("_", " ")}`,
      r.advice.reason ? ` · “${r.advice.reason}”` : "")) : []),
    ...section("Risk verdict", ...verdictParts),
    ...section("What was executed", el("p", { "data-executed": "" }, done),
      fills.length ? el("ul", { class: "plain" }, fills.map(fillItem)) : null),
    raw,
  ];
}

/** The closes an exit-all led to: the fills of the first tick after it. */
function exitAllFills(e) {
  const closes = state.trades.filter((t) => t.entry.action === "close" && t.entry.at_ms >= e.at_ms);
  const first = Math.min(...closes.map((t) => t.entry.at_ms));
  const fills = closes.filter((t) => t.entry.at_ms === first);
  return section("What was executed", fills.length
    ? el("ul", { class: "plain" }, fills.map(fillItem))
    : el("p", {}, "No close yet: the positions close at the next tick (each is journaled as a decision)."));
}

function fillItem(t) {
  const f = t.entry;
  const txs = (f.tx_hashes || []).map(shortHash).join(", ");
  return el("li", {}, `${f.action} ${f.position} in ${f.pool}: ${usd(f.usd)}, fee ${usd(f.fee_usd)}, slippage ${usd(f.slippage_usd)}, gas ${usd(f.gas_usd)}${f.pnl_usd != null ? `, PnL ${usd(f.pnl_usd)}` : ""}${txs ? `; transactions ${txs}` : ""}`);
}

/** The positions an intent names (a close, the position a rebalance leaves, a compound). */
function intentPositions(intent) {
  const i = Object.values(intent)[0];
  return [i.position, i.from].filter(Boolean);
}

function intentText(intent) {
  const [kind, i] = Object.entries(intent)[0];
  switch (kind) {
    case "open": return `open ${i.pool}`;
    case "close": return `close ${i.position}: ${i.reason}`;
    case "rebalance": return `rebalance ${i.from} into ${i.to}`;
    case "compound": return `compound ${i.position}`;
    case "sweep": return `sweep ${i.token} back into cash through ${i.pool}`;
    default: return JSON.stringify(intent);
  }
}

function sizingTables(s, verdict, tokens) {
  const f = s.factors;
  const factors = [["volatility", f.volatility], ["concentration", f.concentration], ["gas", f.gas],
    ["correlation", f.correlation], ["recovery", f.recovery], ["slippage", f.slippage]];
  const product = factors.reduce((a, [, x]) => a * x, 1);
  const factorTable = el("table", { class: "factors" },
    el("thead", {}, el("tr", {}, el("th", {}, "Sizing factor"), el("th", {}, "Value"))),
    el("tbody", {},
      el("tr", {}, el("td", {}, "base size"), el("td", {}, usd(s.base_usd))),
      factors.map(([k, x]) => el("tr", {}, el("td", {}, k), el("td", {}, `× ${num(x, 3)}`))),
      el("tr", {}, el("td", {}, el("b", {}, "sized")), el("td", {}, el("b", {}, usd(s.base_usd * product))))));
  const smallest = Math.min(...s.caps.map((c) => c.usd));
  let tokenCap = 0; // the two token_fraction caps are the pool's first and second token, in order
  const capName = (c) => c.rule === "token_fraction" && tokens.length === 2 ? `token_fraction (${tokens[tokenCap++]})` : c.rule;
  const capTable = el("table", { class: "caps" },
    el("thead", {}, el("tr", {}, el("th", {}, "Cap"), el("th", {}, "Most allowed"))),
    el("tbody", {}, s.caps.map((c) => el("tr", { class: c.usd === smallest ? "binding" : null },
      el("td", {}, capName(c) + (c.usd === smallest ? " (binding)" : "")), el("td", {}, usd(c.usd))))));
  return [el("div", { class: "scroll" }, factorTable), el("div", { class: "scroll" }, capTable),
    el("p", { class: "hint" }, `The size is the smallest of the caps${verdict.requested_usd ? " and the request" : ""}.`)];
}

async function loadJournal() {
  try {
    state.journal = await get(journalQuery());
    state.journalPages = 1;
    state.journalNewer = 0;
    $("journal-newer").hidden = true;
    $("journal-older").hidden = state.journal.length < JOURNAL_LIMIT;
    renderJournal();
    if (state.selectedSeq != null) openEntry(state.selectedSeq);
  } catch (e) { readFailed(e); }
}

/** The next page: entries older than the last one listed. */
async function loadOlder() {
  const last = state.journal[state.journal.length - 1];
  if (!last) return;
  // One more page kept from now on, so entries streamed in meanwhile push nothing off the end.
  state.journalPages++;
  try {
    const older = await get(`${journalQuery()}&before=${last.seq}`);
    const end = state.journal[state.journal.length - 1].seq;
    state.journal = [...state.journal, ...older.filter((e) => e.seq < end)];
    $("journal-older").hidden = older.length < JOURNAL_LIMIT;
    renderJournal();
  } catch (e) { readFailed(e); }
}

// ---- Refreshing ---------------------------------------------------------------------------

function readFailed(e) {
  if (e.status === 401) {
    state.readsNeedToken = true;
    $("read-banner").hidden = false;
    $("read-banner").textContent = token()
      ? `The agent refused the token entered for reads: ${e.message}. Enter the right one above.`
      : "This agent is not on this machine's loopback: reads need the admin token too. Enter it above.";
  }
}

/** Everything the stream does not carry, fetched after each status event (one at a time). */
async function refreshPanels() {
  if (state.refreshing) { state.refreshAgain = true; return; }
  state.refreshing = true;
  try {
    do {
      state.refreshAgain = false;
      const first = state.refreshes++ === 0;
      const fetchTrades = first || state.tradesDirty;
      state.tradesDirty = false;
      const resample = first || state.resample;
      state.resample = false;
      const [risk, gas, sync, memories, recovery, checkpoints, alerts, perf, pools, txs, trades, equity] = await Promise.all([
        get("/risk/status"), get("/gas/recommendation"), get("/sync/status"), get("/memories/stats"),
        get("/recovery/status"), get("/recovery/checkpoints"), get("/alerts"), get("/performance"),
        get("/pools/opportunities"), get("/chain/transactions?limit=50"),
        fetchTrades ? get("/trades?limit=1000") : null,
        resample ? get(`/equity?points=${EQUITY_POINTS}`) : null,
      ]);
      $("read-banner").hidden = true;
      renderRisk(risk); renderGas(gas); renderSync(sync); renderMemories(memories);
      renderRecovery(recovery, checkpoints); renderAlerts(alerts); renderPools(pools); renderTransactions(txs);
      renderLlm(perf.llm);
      state.startingUsd = perf.equity_usd - perf.pnl_usd;
      if (trades) state.trades = trades;
      if (equity) state.equity = equity;
      drawCharts();
    } while (state.refreshAgain);
  } catch (e) {
    readFailed(e);
  } finally {
    state.refreshing = false;
  }
}

async function loadAll() {
  state.refreshes = 0;
  try {
    renderStatus(await get("/status"));
  } catch (e) { readFailed(e); }
  await Promise.all([refreshPanels(), loadJournal()]);
}

// ---- The live stream ----------------------------------------------------------------------

const stream = {
  controller: null, retryMs: 1000, timer: null, countdown: null, silence: null, connected: false,
  generation: 0, // each connection's number: only the newest one may schedule a retry
};

function streamState(s, text) {
  document.body.classList.toggle("stale", s === "lost");
  const badge = $("stream-state");
  badge.dataset.state = s;
  badge.textContent = text;
}

function onEvent(name, data) {
  let payload;
  try { payload = JSON.parse(data); } catch { return; }
  if (name in state.events) state.events[name]++;
  switch (name) {
    case "status": renderStatus(payload); refreshPanels(); break;
    case "equity": state.equityQueue = state.equityQueue.then(() => addEquityPoint(payload)); break;
    case "journal":
      if (payload.some((e) => e.kind === "decision" || e.kind === "control")) state.tradesDirty = true;
      addJournal(payload); break;
    case "alert": $("alerts").prepend(alertItem(payload)); break;
  }
}

function armSilence() {
  clearTimeout(stream.silence);
  stream.silence = setTimeout(() => stream.controller && stream.controller.abort(), SILENCE_MS);
}

/** Opens the stream (replacing any connection or pending retry) and reads it until it ends. */
async function connect() {
  clearTimeout(stream.timer);
  clearInterval(stream.countdown);
  const generation = ++stream.generation;
  if (stream.controller) stream.controller.abort();
  const controller = new AbortController();
  stream.controller = controller;
  streamState(stream.connected ? "lost" : "connecting", stream.connected ? "stream lost: reconnecting…" : "connecting…");
  try {
    const response = await fetch("/stream", { headers: headers(false), signal: controller.signal, cache: "no-store" });
    if (!response.ok) throw new ApiError(response.status, "http", `HTTP ${response.status}`);
    const wasLost = stream.connected || stream.everLost;
    stream.connected = true;
    stream.retryMs = 1000;
    streamState("live", "live");
    armSilence();
    if (wasLost) loadAll(); // catch up on what happened while the stream was down
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      armSilence();
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = "message", data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (data.length) onEvent(name, data.join("\n"));
      }
    }
  } catch (e) {
    if (generation === stream.generation) readFailed(e);
  }
  if (generation !== stream.generation) return; // a newer connection took over
  clearTimeout(stream.silence);
  lost();
}

function lost() {
  stream.everLost = true;
  const wait = stream.retryMs;
  stream.retryMs = Math.min(RECONNECT_MAX_MS, stream.retryMs * 2);
  const until = Date.now() + wait;
  const tick = () => {
    const left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
    streamState("lost", `stream lost: reconnecting in ${left}s`);
  };
  tick();
  stream.countdown = setInterval(tick, 500);
  stream.timer = setTimeout(connect, wait);
}

// ---- Controls -----------------------------------------------------------------------------

function setLocked() {
  const has = !!token();
  for (const b of document.querySelectorAll("[data-control]")) b.disabled = !has;
  $("controls-lock").hidden = has;
  $("token-forget").hidden = !has;
  $("token-use").textContent = has ? "Replace token" : "Unlock controls";
}

function result(text, ok) {
  const r = $("control-result");
  r.textContent = text;
  r.className = `result ${ok ? "ok" : "error"}`;
}

function reason() {
  const r = $("control-reason").value.trim();
  if (!r) { result("Give a reason: it is journaled with the command.", false); return null; }
  return r;
}

async function control(path, body) {
  if (body === null) return;
  try {
    const applied = await post(path, body);
    result(`${applied.command}: ${applied.message} (trading ${applied.trading_state})`, true);
    state.tradesDirty = true;
    loadJournal();
    refreshPanels();
  } catch (e) {
    result(e.status === 401 ? `Refused: ${e.message}` : `Not applied: ${e.message}`, false);
  }
}

function withReason(extra = {}) {
  const r = reason();
  return r === null ? null : { ...extra, reason: r };
}

async function loadLimits() {
  try {
    const doc = await get("/openapi.json");
    const keys = doc.components.schemas.Override.properties.limit.enum || [];
    fillSelect($("override-limit"), keys);
  } catch (e) { readFailed(e); }
}

function wireControls() {
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = $("token-input").value.trim();
    if (!t) return;
    sessionStorage.setItem(TOKEN_KEY, t);
    $("token-input").value = "";
    setLocked();
    result("Token kept for this tab. The agent checks it on each command.", true);
    loadAll();
    // A stream refused for want of the token is retried now, not at the end of its backoff.
    if ($("stream-state").dataset.state !== "live") { stream.retryMs = 1000; connect(); }
  });
  $("token-forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    setLocked();
    result("Token forgotten.", true);
    // A stream opened with the token must not outlive it where reads need it (off loopback).
    if (state.readsNeedToken) { stream.retryMs = 1000; connect(); }
  });
  $("btn-stop").addEventListener("click", () => control("/emergency/stop", withReason()));
  $("btn-resume").addEventListener("click", () => control("/emergency/resume", withReason()));
  $("btn-exit-all").addEventListener("click", () => {
    if (reason() === null) return;
    $("exit-confirm").hidden = false;
  });
  $("btn-exit-cancel").addEventListener("click", () => { $("exit-confirm").hidden = true; });
  $("btn-exit-confirm").addEventListener("click", () => {
    $("exit-confirm").hidden = true;
    control("/emergency/exit-all", withReason({ confirm: true }));
  });
  $("btn-reset").addEventListener("click", () =>
    control(`/risk/circuit-breakers/${encodeURIComponent($("reset-breaker").value)}/reset`, withReason()));
  $("btn-override").addEventListener("click", () => {
    const value = Number($("override-value").value);
    if ($("override-value").value === "" || !isFinite(value)) { result("Give the limit's value.", false); return; }
    control("/risk/override", withReason({ limit: $("override-limit").value, value, for: $("override-for").value.trim() }));
  });
  $("journal-kind").addEventListener("change", loadJournal);
  $("journal-older").addEventListener("click", loadOlder);
  $("journal-newer").addEventListener("click", loadJournal);
  let typing;
  $("journal-pool").addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(loadJournal, 300); });
}

// ---- Start --------------------------------------------------------------------------------

makeCharts();
wireControls();
setLocked();
loadLimits();
loadAll().then(connect);
// For the browser test and for anyone curious in the console: the charts and the page state.
window.athena = { charts, state };
