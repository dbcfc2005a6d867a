//! Metrics, health and alerts of the real binary: the exposition passes `promtool check
//! metrics`, a real Prometheus server scrapes the agent and answers a query, a stuck agent
//! loop makes `/health` unhealthy, and alerts reach a webhook.

mod support;

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::Running;
use support::http::{Agent, TOKEN};

fn metrics(agent: &Agent) -> String {
    agent.rt.block_on(async {
        let r = agent
            .http
            .get(format!("{}/metrics", agent.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain; version=0.0.4")
        );
        r.text().await.unwrap()
    })
}

#[test]
fn the_exposition_of_a_running_agent_passes_promtool() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(
        tmp.path(),
        &[
            ("ATHENA_API_ADMIN_TOKEN", TOKEN),
            ("ATHENA_MONITOR_METRICS_INTERVAL", "200ms"),
        ],
    );
    agent.wait_until("/status", "a first tick", |_| true);
    // A command and a sample make every family carry values.
    let (status, _) = agent.post("/memory/prune", Some(TOKEN), json!({}));
    assert_eq!(status, 200);
    let started = Instant::now();
    let text = loop {
        let text = metrics(&agent);
        // A sample taken after the first memories were written.
        if text.contains("athena_memories{") && !text.contains("athena_store_size_bytes 0\n") {
            break text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no sample:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    for family in [
        "athena_tick_duration_seconds_bucket",
        "athena_ticks_total",
        "athena_equity_usd",
        "athena_trading_state{state=\"active\"} 1",
        "athena_breaker_tripped{breaker=\"rapid_loss\"} 0",
        "athena_memories{",
        "athena_sync_queue_depth",
        "athena_command_seconds_count{command=\"prune\"} 1",
        "athena_prune_runs_total ",
        "process_resident_memory_bytes",
    ] {
        assert!(text.contains(family), "{family} missing:\n{text}");
    }
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is missing: apt-get install prometheus (scripts/test.sh installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}"
    );
    agent.stop();
}

/// A free loopback port (bound, then released for the server to take).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_real_prometheus_scrapes_the_agent_and_answers_a_query() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("agent"), &[]);
    agent.wait_until("/status", "a first tick", |_| true);
    let target = agent.base.trim_start_matches("http://");
    let config = tmp.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: athena\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let log = std::fs::File::create(tmp.path().join("prometheus.log")).unwrap();
    let prometheus = Running(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                tmp.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect(
                "prometheus is missing: apt-get install prometheus (scripts/test.sh installs it)",
            ),
    );
    let query = format!("http://127.0.0.1:{port}/api/v1/query?query=athena_ticks_total");
    let started = Instant::now();
    let answer: Value = loop {
        let got = agent.rt.block_on(async {
            let r = agent.http.get(&query).send().await.ok()?;
            r.json::<Value>().await.ok()
        });
        if let Some(v) = got
            && v["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
        {
            break v;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "Prometheus has no athena_ticks_total:\n{}",
            std::fs::read_to_string(tmp.path().join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let sample = &answer["data"]["result"][0];
    assert_eq!(sample["metric"]["job"], "athena");
    let ticks: f64 = sample["value"][1].as_str().unwrap().parse().unwrap();
    assert!(ticks >= 1.0, "{answer}");
    drop(prometheus);
    agent.stop();
}

#[test]
fn a_stuck_agent_loop_makes_the_liveness_check_fail() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(tmp.path(), &[("ATHENA_FAULT_STALL_AFTER_TICKS", "3")]);
    agent.wait_until("/status", "three ticks", |s| s["last_tick"] == 2);
    let (status, health) = agent.get("/health");
    assert_eq!(status, 200, "{health}");
    // The heartbeat ages: after three tick intervals and the margin, the loop is stuck.
    let started = Instant::now();
    let health = loop {
        let (status, health) = agent.get("/health");
        if status == 503 {
            break health;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "/health stayed {status}: {health}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(health["status"], "unhealthy");
    let stuck = health["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["status"] == "unhealthy")
        .unwrap();
    assert!(
        stuck["reason"].as_str().unwrap().contains("has not ticked"),
        "{health}"
    );
    agent.stop();
}

/// A webhook receiver on loopback: each request's body, as JSON, on a channel.
fn receiver() -> (String, std::sync::mpsc::Receiver<Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).ok();
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .ok();
            if let Ok(v) = serde_json::from_slice(&body) {
                let _ = tx.send(v);
            }
        }
    });
    (url, rx)
}

#[test]
fn a_trading_state_change_is_alerted_to_the_webhook_and_listed() {
    let (url, alerts) = receiver();
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(
        tmp.path(),
        &[
            ("ATHENA_API_ADMIN_TOKEN", TOKEN),
            ("ATHENA_MONITOR_WEBHOOK_URL", &url),
        ],
    );
    agent.wait_until("/status", "a first tick", |_| true);
    let (status, _) = agent.post(
        "/emergency/stop",
        Some(TOKEN),
        json!({"reason": "alert me"}),
    );
    assert_eq!(status, 200);
    let started = Instant::now();
    let alert = loop {
        let a = alerts
            .recv_timeout(Duration::from_secs(60))
            .expect("no alert reached the webhook");
        if a["kind"] == "trading_state" {
            break a;
        }
        assert!(started.elapsed() < Duration::from_secs(60));
    };
    assert!(
        alert["message"].as_str().unwrap().contains("halted"),
        "{alert}"
    );
    let listed = agent.wait_until("/alerts", "the alert listed", |a| {
        a.as_array()
            .unwrap()
            .iter()
            .any(|x| x["kind"] == "trading_state")
    });
    assert!(!listed.to_string().contains(TOKEN));
    agent.stop();
}
