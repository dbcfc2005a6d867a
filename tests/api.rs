//! The operators' API of the real binary, used as an operator uses it: the admin token, bad
//! input, the emergency controls through the command queue (a stop is in force before any
//! further execution; exit-all closes every position), the stream, and the runtime file.

mod support;

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::http::{Agent, TOKEN};

fn error_code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no JSON error in {body}"))
}

#[test]
fn without_a_token_the_controls_are_refused_and_say_how_to_set_one() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(tmp.path(), &[]);
    agent.wait_until("/status", "a first tick", |_| true);
    let (status, body) = agent.post("/emergency/stop", Some(TOKEN), json!({"reason": "x"}));
    assert_eq!(status, 403, "{body}");
    assert_eq!(error_code(&body), "forbidden");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ATHENA_API_ADMIN_TOKEN")
    );
    // Reads stay open on loopback.
    assert_eq!(agent.get("/risk/status").0, 200);
    agent.stop();
}

#[test]
fn the_emergency_stop_is_applied_with_the_token_only_and_journaled() {
    let tmp = tempfile::tempdir().unwrap();
    // Debug logs on (a span per request): the token must reach none of it.
    let agent = Agent::start(
        tmp.path(),
        &[("ATHENA_API_ADMIN_TOKEN", TOKEN), ("ATHENA_LOG", "debug")],
    );
    agent.wait_until("/status", "a first tick", |_| true);

    let (status, body) = agent.post("/emergency/stop", None, json!({"reason": "x"}));
    assert_eq!((status, error_code(&body)), (401, "unauthorized"), "{body}");
    let (status, body) = agent.post(
        "/emergency/stop",
        Some("not-the-token-0123456789"),
        json!({"reason": "x"}),
    );
    assert_eq!((status, error_code(&body)), (401, "unauthorized"), "{body}");

    let (status, body) = agent.post(
        "/emergency/stop",
        Some(TOKEN),
        json!({"reason": "operator test"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["trading_state"], "halted");
    let (_, risk) = agent.get("/risk/status");
    assert_eq!(risk["trading_state"], "halted");
    assert_eq!(risk["state"]["operator_stop"]["reason"], "operator test");
    let (_, journal) = agent.get("/journal?kind=control&limit=5");
    let summaries: Vec<&str> = journal
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["summary"].as_str())
        .collect();
    assert!(
        summaries.contains(&"operator stop: operator test"),
        "{summaries:?}"
    );

    let (status, body) = agent.post("/emergency/resume", Some(TOKEN), json!({"reason": "done"}));
    assert_eq!(status, 200, "{body}");
    assert_ne!(body["trading_state"], "halted");
    let log = agent.stop();
    assert!(!log.contains(TOKEN), "the token reached the log:\n{log}");
}

#[test]
fn checkpoints_on_demand_are_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(tmp.path(), &[("ATHENA_API_ADMIN_TOKEN", TOKEN)]);
    agent.wait_until("/status", "a first tick", |_| true);
    let (status, first) = agent.post("/recovery/checkpoint", Some(TOKEN), json!({}));
    assert_eq!(status, 200, "{first}");
    assert!(
        first["message"]
            .as_str()
            .unwrap()
            .starts_with("checkpoint "),
        "{first}"
    );
    let (status, again) = agent.post("/recovery/checkpoint", Some(TOKEN), json!({}));
    assert_eq!(
        (status, error_code(&again)),
        (429, "too_many_requests"),
        "{again}"
    );
    assert!(
        again["error"]["message"]
            .as_str()
            .unwrap()
            .contains("on demand")
    );
    agent.stop();
}

#[test]
fn binding_beyond_loopback_without_a_token_is_refused_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let (ok, out) = support::athena(
        &[
            "--data-dir",
            tmp.path().join("data").to_str().unwrap(),
            "run",
        ],
        &[("ATHENA_API_BIND", "0.0.0.0:0")],
    );
    assert!(!ok, "{out}");
    assert!(out.contains("not a loopback address"), "{out}");
    assert!(
        !tmp.path().join("data/athena.redb").exists(),
        "the store was touched before the refusal"
    );
}

#[test]
fn bad_input_gets_a_json_4xx_never_a_5xx() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(
        tmp.path(),
        &[
            ("ATHENA_API_ADMIN_TOKEN", TOKEN),
            ("ATHENA_API_MAX_BODY_BYTES", "1024"),
        ],
    );
    agent.wait_until("/status", "a first tick", |_| true);
    let url = |p: &str| format!("{}{p}", agent.base);
    let authed = |r: reqwest::RequestBuilder| r.bearer_auth(TOKEN);
    let cases: Vec<(&str, reqwest::RequestBuilder, u16)> = vec![
        (
            "malformed JSON",
            authed(agent.http.post(url("/emergency/stop")))
                .header("content-type", "application/json")
                .body("{\"reason\":"),
            400,
        ),
        (
            "no content type",
            authed(agent.http.post(url("/emergency/stop"))).body("{\"reason\":\"x\"}"),
            415,
        ),
        (
            "a body over api.max_body_bytes",
            authed(agent.http.post(url("/emergency/stop"))).json(&json!({"reason": "x".repeat(4096)})),
            413,
        ),
        (
            "an empty reason",
            authed(agent.http.post(url("/emergency/stop"))).json(&json!({"reason": "  "})),
            400,
        ),
        (
            "a reason with a line break",
            authed(agent.http.post(url("/emergency/stop")))
                .json(&json!({"reason": "x\nathena: stopped cleanly"})),
            400,
        ),
        (
            "an unknown field",
            authed(agent.http.post(url("/emergency/stop"))).json(&json!({"reason": "x", "why": 1})),
            422,
        ),
        (
            "an unknown breaker",
            authed(agent.http.post(url("/risk/circuit-breakers/nope/reset")))
                .json(&json!({"reason": "x"})),
            400,
        ),
        (
            "an unknown limit",
            authed(agent.http.post(url("/risk/override")))
                .json(&json!({"limit": "risk.nope", "value": 1.0, "for": "1h", "reason": "x"})),
            400,
        ),
        (
            "an override beyond 24 h",
            authed(agent.http.post(url("/risk/override"))).json(
                &json!({"limit": "risk.max_position_fraction", "value": 0.1, "for": "3days", "reason": "x"}),
            ),
            400,
        ),
        (
            "exit-all without confirmation",
            authed(agent.http.post(url("/emergency/exit-all")))
                .json(&json!({"confirm": false, "reason": "x"})),
            400,
        ),
        ("a zero limit", agent.http.get(url("/journal?limit=0")), 400),
        ("an unknown kind", agent.http.get(url("/journal?kind=nope")), 400),
        ("a bad age", agent.http.get(url("/journal?since=yesterday")), 400),
        ("a negative limit", agent.http.get(url("/trades?limit=-1")), 400),
        ("too many points", agent.http.get(url("/equity?points=0")), 400),
        ("a bad category", agent.http.get(url("/memories/recent?category=x")), 400),
        ("an unknown path", agent.http.get(url("/nope")), 404),
        ("a wrong method", agent.http.get(url("/emergency/stop")), 405),
        ("a restore while running", authed(agent.http.post(url("/recovery/restore"))), 409),
    ];
    for (what, request, expected) in cases {
        let (status, body) = agent.send(request);
        assert_eq!(status, expected, "{what}: {body}");
        assert!(
            body["error"]["code"].is_string() && body["error"]["message"].is_string(),
            "{what}: not the JSON error shape: {body}"
        );
    }
    agent.stop();
}

/// Runs fast enough to trade within seconds: a short observation period.
const TRADING: &[(&str, &str)] = &[
    ("ATHENA_API_ADMIN_TOKEN", TOKEN),
    ("ATHENA_AGENT_OBSERVATION_PERIOD", "2h"),
    ("ATHENA_AGENT_TIME_SCALE", "20000"),
];

#[test]
fn a_stop_is_in_force_before_any_further_execution() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(tmp.path(), TRADING);
    agent.wait_until("/trades", "a first trade", |t| {
        !t.as_array().unwrap().is_empty()
    });
    let (status, body) = agent.post("/emergency/stop", Some(TOKEN), json!({"reason": "halt"}));
    assert_eq!(status, 200, "{body}");
    let stopped_at = body["at_ms"].as_u64().unwrap();
    // Let the agent tick on for a while: nothing is opened after the stop.
    let tick = agent.get("/status").1["last_tick"].as_u64().unwrap();
    agent.wait_until("/status", "ticks after the stop", |s| {
        s["last_tick"].as_u64().unwrap() > tick + 50
    });
    let (_, trades) = agent.get("/trades?limit=1000");
    let opened_after: Vec<&Value> = trades
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| {
            t["entry"]["action"] == "open" && t["entry"]["at_ms"].as_u64() >= Some(stopped_at)
        })
        .collect();
    assert!(
        opened_after.is_empty(),
        "opened after the stop: {opened_after:?}"
    );
    let (_, decisions) = agent.get("/journal?kind=decision&limit=1000");
    for d in decisions.as_array().unwrap() {
        let r = &d["record"]["decision"];
        if r["at_ms"].as_u64() >= Some(stopped_at) && r["intent"]["open"].is_object() {
            assert!(r["executed_usd"].is_null(), "executed after the stop: {d}");
        }
    }
    agent.stop();
}

#[test]
fn exit_all_closes_every_position_at_once_and_halts() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(tmp.path(), TRADING);
    agent.wait_until("/positions", "open positions", |p| {
        !p.as_array().unwrap().is_empty()
    });
    let (status, body) = agent.post(
        "/emergency/exit-all",
        Some(TOKEN),
        json!({"confirm": true, "reason": "leave"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["trading_state"], "halted");
    agent.wait_until("/positions", "every position closed", |p| {
        p.as_array().unwrap().is_empty()
    });
    let (_, decisions) = agent.get("/journal?kind=decision&limit=50");
    assert!(
        decisions.as_array().unwrap().iter().any(|d| d["summary"]
            .as_str()
            .unwrap()
            .contains("operator exit-all: leave")),
        "{decisions}"
    );
    // Halted: nothing is opened again.
    let (_, risk) = agent.get("/risk/status");
    assert_eq!(risk["trading_state"], "halted");
    agent.stop();
}

#[test]
fn the_stream_sends_the_status_and_new_journal_entries_and_ends_with_the_agent() {
    let tmp = tempfile::tempdir().unwrap();
    let mut agent = Agent::start(
        tmp.path(),
        &[
            ("ATHENA_API_ADMIN_TOKEN", TOKEN),
            ("ATHENA_API_STREAM_INTERVAL", "200ms"),
        ],
    );
    agent.wait_until("/status", "a first tick", |_| true);
    let seen = agent.rt.block_on(async {
        let mut r = agent
            .http
            .get(format!("{}/stream", agent.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let mut text = String::new();
        let mut stopped = false;
        let started = Instant::now();
        while !text.contains("operator stop: seen on the stream") {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the stream did not carry the stop:\n{text}"
            );
            let chunk = tokio::time::timeout(Duration::from_secs(10), r.chunk())
                .await
                .expect("the stream went quiet")
                .unwrap()
                .expect("the stream ended");
            text.push_str(&String::from_utf8_lossy(&chunk));
            if text.contains("event: status") && !stopped {
                // A control made now shows on the stream as a journal entry.
                let answer = agent
                    .http
                    .post(format!("{}/emergency/stop", agent.base))
                    .bearer_auth(TOKEN)
                    .json(&json!({"reason": "seen on the stream"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(answer.status(), 200);
                stopped = true;
            }
        }
        // Stopping the agent ends the open stream cleanly (the shutdown does not wait on it).
        support::signal(&agent.child, "-INT");
        loop {
            match tokio::time::timeout(Duration::from_secs(30), r.chunk()).await {
                Ok(Ok(Some(_))) => continue,
                Ok(Ok(None)) => break,
                Ok(Err(e)) => panic!("the stream broke off instead of ending: {e}"),
                Err(_) => panic!("the stream outlived the agent's stop"),
            }
        }
        text
    });
    assert!(seen.contains("event: equity"), "{seen}");
    let status = support::wait_exit(&mut agent.child, Duration::from_secs(60), &agent.log);
    assert!(status.success(), "{}", agent.log());
    assert!(
        agent.log().contains("athena: stopped cleanly"),
        "{}",
        agent.log()
    );
}

#[test]
fn a_second_agent_on_the_same_data_directory_leaves_the_first_reachable() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(tmp.path(), &[("ATHENA_API_ADMIN_TOKEN", TOKEN)]);
    let data = agent.dir.to_str().unwrap().to_string();
    let runtime = std::fs::read_to_string(agent.dir.join("api.json")).unwrap();
    let (ok, out) = support::athena(&["--data-dir", &data, "run"], &[]);
    assert!(!ok, "{out}");
    assert!(out.contains("already runs on this data directory"), "{out}");
    assert!(
        !out.contains("API on"),
        "the refused agent announced an API:\n{out}"
    );
    assert_eq!(
        std::fs::read_to_string(agent.dir.join("api.json")).unwrap(),
        runtime,
        "the refused agent touched the runtime file"
    );
    // The emergency stop still reaches the first agent through the CLI.
    let (ok, out) = support::athena(
        &[
            "--data-dir",
            &data,
            "risk",
            "stop",
            "--reason",
            "still reachable",
        ],
        &[("ATHENA_API_ADMIN_TOKEN", TOKEN)],
    );
    assert!(ok, "{out}");
    assert_eq!(agent.get("/risk/status").1["trading_state"], "halted");
    agent.stop();
}

#[test]
fn wrong_tokens_in_flight_do_not_hold_up_the_right_one() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(tmp.path(), &[("ATHENA_API_ADMIN_TOKEN", TOKEN)]);
    agent.wait_until("/status", "a first tick", |_| true);
    agent.rt.block_on(async {
        let guesses: Vec<_> = (0..8)
            .map(|i| {
                let request = agent
                    .http
                    .post(format!("{}/emergency/resume", agent.base))
                    .bearer_auth(format!("a-wrong-guess-0123456789-{i}"))
                    .json(&json!({"reason": "guess"}));
                tokio::spawn(async move { request.send().await.unwrap().status().as_u16() })
            })
            .collect();
        // Every guess has reached the agent and is being slowed down (it logs each failure
        // before its delay), 100 ms doubling up to 5 s.
        let log = agent.log.clone();
        tokio::task::spawn_blocking(move || {
            support::wait_line(
                &log,
                "8 failed authentications",
                |l| l.contains("failed admin authentication") && l.contains("failures=8"),
                Duration::from_secs(60),
            )
        })
        .await
        .unwrap();
        let answer = agent
            .http
            .post(format!("{}/emergency/stop", agent.base))
            .bearer_auth(TOKEN)
            .json(&json!({"reason": "while guesses wait"}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        assert!(
            guesses.iter().any(|g| !g.is_finished()),
            "the right token waited for every wrong one"
        );
        for g in guesses {
            assert_eq!(g.await.unwrap(), 401);
        }
    });
    agent.stop();
}

#[test]
fn the_runtime_file_names_the_agent_while_it_runs_and_goes_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(tmp.path(), &[]);
    let file = agent.dir.join("api.json");
    let runtime: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(runtime["pid"].as_u64(), Some(u64::from(agent.child.id())));
    assert_eq!(
        format!("http://{}", runtime["address"].as_str().unwrap()),
        agent.base
    );
    let dir = agent.dir.clone();
    agent.stop();
    assert!(
        !dir.join("api.json").exists(),
        "the runtime file outlived the agent"
    );
}

#[test]
fn the_dashboard_and_its_assets_are_served_from_the_binary_under_a_strict_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(tmp.path(), &[]);
    let fetch = |path: &str| {
        agent.rt.block_on(async {
            let r = agent
                .http
                .get(format!("{}{path}", agent.base))
                .send()
                .await
                .unwrap();
            let header = |h: &str| {
                r.headers()
                    .get(h)
                    .map(|v| v.to_str().unwrap().to_string())
                    .unwrap_or_default()
            };
            let (ct, csp) = (header("content-type"), header("content-security-policy"));
            (r.status().as_u16(), ct, csp, r.text().await.unwrap())
        })
    };
    let (status, ct, csp, page) = fetch("/");
    assert_eq!(status, 200);
    assert!(ct.starts_with("text/html"), "{ct}");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(
        !page.contains("<script>"),
        "no inline script: the policy forbids it"
    );
    let assets: Vec<&str> = page
        .split("/assets/")
        .skip(1)
        .map(|s| s.split('"').next().unwrap())
        .collect();
    assert_eq!(assets.len(), 4, "{assets:?}");
    for asset in assets {
        let (status, ct, _, body) = fetch(&format!("/assets/{asset}"));
        assert_eq!(status, 200, "{asset}");
        let kind = if asset.ends_with(".js") {
            "text/javascript"
        } else {
            "text/css"
        };
        assert!(ct.starts_with(kind), "{asset}: {ct}");
        assert!(!body.is_empty());
    }
    let (status, _, _, body) = fetch("/assets/missing.js");
    assert_eq!(status, 404);
    assert!(body.contains("\"code\":\"not_found\""), "{body}");
    agent.stop();
}

#[test]
fn a_journaled_decision_says_what_was_seen_which_rule_asked_and_how_it_was_sized() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(tmp.path(), TRADING);
    let approved_open = |e: &serde_json::Value| {
        let d = &e["record"]["decision"];
        d["intent"]["open"].is_object() && d["decision"]["Approve"].is_object()
    };
    let entries = agent.wait_until("/journal?kind=decision&limit=1000", "an open", |j| {
        j.as_array().unwrap().iter().any(approved_open)
    });
    let open = &entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| approved_open(e))
        .unwrap()["record"]["decision"];
    assert!(
        open["rule"].as_str().unwrap().starts_with("open: APR "),
        "{open}"
    );
    assert!(open["gas_gwei"].as_f64().unwrap() > 0.0, "{open}");
    assert!(open["gas_usd"].as_f64().unwrap() > 0.0, "{open}");
    let sizing = &open["sizing"];
    assert!(sizing["base_usd"].as_f64().unwrap() > 0.0, "{open}");
    assert_eq!(sizing["factors"].as_object().unwrap().len(), 6, "{open}");
    let caps = sizing["caps"].as_array().unwrap();
    assert!(caps.len() >= 5, "{open}");
    // The size is the smallest cap (an open asks for no particular size).
    let smallest = caps
        .iter()
        .map(|c| c["usd"].as_f64().unwrap())
        .fold(f64::INFINITY, f64::min);
    let size = open["decision"]["Approve"]["size_usd"].as_f64().unwrap();
    assert!((size - smallest).abs() < 1e-6, "{open}");
    agent.stop();
}
