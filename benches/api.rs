//! The operators' API under measurement, against the real binary (release build):
//!
//! 1. **Emergency stop latency**: the time from sending `POST /emergency/stop` to its answer,
//!    which comes after the stop is committed, over many requests (stop and resume alternate),
//!    with the agent ticking as fast as it can (a command waits for the tick in progress).
//!    Reported as p50/p99/max, client-side and as the agent measures it (request received to
//!    committed answer).
//! 2. **Tick p99 under load**: the agent ticking as fast as it can; three rounds of 20 s
//!    without API traffic then 20 s with a bounded load of 500 requests/s over `/status`,
//!    `/metrics` and `/journal` from this process; the tick p99 of each phase (the agent's
//!    last 4,096 ticks) and the ratio of the medians. Both phases run in one process on the same machine, so the load generator's own
//!    CPU counts against the agent, as a co-located dashboard's would.
//!
//! `cargo bench --bench api` (set `API_BENCH_SECS` to shorten the phases, the recorded
//! numbers use the default 20; `API_BENCH_PATHS=/status,/metrics` chooses the loaded paths;
//! `API_BENCH_CLIENT_NICE=10` runs the load generator at a lower CPU priority than the agent).

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_athena");
const TOKEN: &str = "bench-admin-token-0123456789";
const STOPS: usize = 400;
const RATE_PER_SEC: u64 = 500;
const ROUNDS: usize = 3;

struct Agent {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &std::path::Path) -> Agent {
    let mut child = Command::new(BIN)
        .args(["--data-dir", dir.to_str().unwrap(), "run"])
        .env("ATHENA_API_BIND", "127.0.0.1:0")
        .env("ATHENA_API_ADMIN_TOKEN", TOKEN)
        // As fast as the machine allows: a tick is 0.3 ms of wall time at this scale, so
        // ticks run back to back.
        .env("ATHENA_AGENT_TIME_SCALE", "1000000")
        .env("ATHENA_AGENT_OBSERVATION_PERIOD", "2h")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the athena binary");
    let out = BufReader::new(child.stdout.take().unwrap());
    let mut address = None;
    let mut lines = out.lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.split("API on http://").nth(1) {
            address = rest.split_whitespace().next().map(str::to_string);
            break;
        }
    }
    // Keep draining the agent's output so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Agent {
        child,
        base: format!(
            "http://{}",
            address.expect("the agent printed its API address")
        ),
        http: reqwest::Client::new(),
    }
}

async fn get(a: &Agent, path: &str) -> Value {
    a.http
        .get(format!("{}{path}", a.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn control(a: &Agent, path: &str, reason: &str) -> Duration {
    let started = Instant::now();
    let r = a
        .http
        .post(format!("{}{path}", a.base))
        .bearer_auth(TOKEN)
        .json(&json!({ "reason": reason }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{path}: {}", r.text().await.unwrap());
    started.elapsed()
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Waits until the agent has ticked past its observation period.
async fn wait_trading(a: &Agent) {
    let started = Instant::now();
    loop {
        let s = get(a, "/status").await;
        if s["last_tick_ms"].as_u64() >= s["observation_end_ms"].as_u64()
            && s["last_tick_ms"].as_u64().is_some()
        {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "{s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn stop_latency(a: &Agent) {
    let mut stops = Vec::with_capacity(STOPS);
    for i in 0..STOPS {
        stops.push(control(a, "/emergency/stop", &format!("bench {i}")).await);
        control(a, "/emergency/resume", "bench").await;
    }
    stops.sort();
    let perf = get(a, "/performance").await;
    let server = &perf["commands"]["stop"];
    println!(
        "emergency stop, request to committed answer, {STOPS} requests while ticking: client p50 {:.2} ms p99 {:.2} ms max {:.2} ms; agent-side p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
        ms(percentile(&stops, 0.5)),
        ms(percentile(&stops, 0.99)),
        ms(*stops.last().unwrap()),
        server["p50_us"].as_f64().unwrap() / 1000.0,
        server["p99_us"].as_f64().unwrap() / 1000.0,
        server["max_us"].as_f64().unwrap() / 1000.0,
    );
}

/// Ticks run in a phase and the tick p99 at its end.
async fn phase(a: &Agent, secs: u64, load: bool) -> (u64, f64, f64, f64, u64, u64) {
    let before = get(a, "/status").await["last_tick"].as_u64().unwrap();
    let (sent, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    if load {
        let paths: Vec<String> = std::env::var("API_BENCH_PATHS")
            .unwrap_or_else(|_| "/status,/metrics,/journal?limit=50".into())
            .split(',')
            .map(str::to_string)
            .collect();
        let mut every = tokio::time::interval(Duration::from_micros(1_000_000 / RATE_PER_SEC));
        let end = Instant::now() + Duration::from_secs(secs);
        let mut i = 0usize;
        while Instant::now() < end {
            every.tick().await;
            let (http, url) = (
                a.http.clone(),
                format!("{}{}", a.base, paths[i % paths.len()]),
            );
            let (sent, failed) = (sent.clone(), failed.clone());
            tokio::spawn(async move {
                sent.fetch_add(1, Ordering::Relaxed);
                match http.get(url).send().await {
                    Ok(r) if r.status().as_u16() < 500 => {
                        let _ = r.bytes().await;
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
            i += 1;
        }
    } else {
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }
    let perf = get(a, "/performance").await;
    let after = get(a, "/status").await["last_tick"].as_u64().unwrap();
    let ticks = &perf["ticks"];
    (
        after - before,
        ticks["p50_us"].as_f64().unwrap() / 1000.0,
        ticks["p99_us"].as_f64().unwrap() / 1000.0,
        perf["ticks_without_write"]["p99_us"].as_f64().unwrap() / 1000.0,
        sent.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    )
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run only as a bench.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let secs: u64 = std::env::var("API_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let tmp = tempfile::tempdir().unwrap();
    let agent = start(tmp.path());
    // The load generator shares the agent's two cores; API_BENCH_CLIENT_NICE lowers its CPU
    // priority (as a client on another machine would not compete at all).
    let client_nice: i32 = std::env::var("API_BENCH_CLIENT_NICE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || {
            let tid = rustix::thread::gettid();
            let _ = rustix::process::setpriority_process(Some(tid), client_nice);
        })
        .build()
        .unwrap();
    rt.block_on(async {
        wait_trading(&agent).await;
        stop_latency(&agent).await;
        // Quiet and loaded phases alternate, so a drift of the machine (the disk's fsync
        // times) lands on both; the ratio compares the medians of the phases' p99s.
        let (mut quiet, mut loaded) = (Vec::new(), Vec::new());
        for round in 1..=ROUNDS {
            let (ticks, p50, p99, cpu99, _, _) = phase(&agent, secs, false).await;
            println!("round {round}, no API traffic: {ticks} ticks in {secs} s, tick p50 {p50:.2} ms p99 {p99:.2} ms; without the store write p99 {cpu99:.2} ms");
            quiet.push((p99, cpu99));
            let (ticks, p50, p99, cpu99, sent, failed) = phase(&agent, secs, true).await;
            println!("round {round}, {RATE_PER_SEC} req/s over /status, /metrics, /journal ({sent} sent, {failed} failed): {ticks} ticks in {secs} s, tick p50 {p50:.2} ms p99 {p99:.2} ms; without the store write p99 {cpu99:.2} ms");
            loaded.push((p99, cpu99));
        }
        let median = |v: &[(f64, f64)], part: fn(&(f64, f64)) -> f64| {
            let mut x: Vec<f64> = v.iter().map(part).collect();
            x.sort_by(f64::total_cmp);
            x[x.len() / 2]
        };
        let (q, l) = (median(&quiet, |p| p.0), median(&loaded, |p| p.0));
        println!(
            "tick p99 under load / without (medians of {ROUNDS} phases each): {l:.2} ms / {q:.2} ms = {:.3} (target <= 1.10)",
            l / q
        );
        let (q, l) = (median(&quiet, |p| p.1), median(&loaded, |p| p.1));
        println!(
            "tick p99 without the store write, under load / without: {l:.2} ms / {q:.2} ms = {:.3}",
            l / q
        );
    });
}
