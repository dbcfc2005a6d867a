//! The CLI through the running agent's API, against the real binary: each command run with the
//! agent running (it finds the agent by `DATA_DIR/api.json` and asks its API) and again with
//! the agent stopped (it reads the store), with the same output; the controls through the API
//! with the token, a wrong one and none; commands that need the store to themselves refused
//! while the agent runs; and a stale runtime file falling back to the store.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;
use support::*;

const TOKEN: &str = "cli-api-test-token-0123456789";
const LONG: Duration = Duration::from_secs(120);

/// A data directory with a config that serves the API on a free loopback port, on the real
/// clock with the default 5-minute tick: the agent ticks once at start, then sleeps, so its
/// state holds still while a test compares.
struct Dir {
    tmp: tempfile::TempDir,
}

impl Dir {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("athena.toml"),
            "[agent]\nclock = \"real\"\n\n[api]\nbind = \"127.0.0.1:0\"\n",
        )
        .unwrap();
        Self { tmp }
    }

    fn path(&self) -> &Path {
        self.tmp.path()
    }

    fn data(&self) -> PathBuf {
        self.path().join("data")
    }

    fn global_args(&self) -> Vec<String> {
        vec![
            "--config".into(),
            self.path().join("athena.toml").display().to_string(),
            "--data-dir".into(),
            self.data().display().to_string(),
        ]
    }

    /// `athena ARGS` with `token` (or none) in `ATHENA_API_ADMIN_TOKEN`.
    fn cli_with(&self, args: &[&str], token: Option<&str>) -> Output {
        let mut all = self.global_args();
        all.extend(args.iter().map(|a| a.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = token
            .map(|t| vec![("ATHENA_API_ADMIN_TOKEN", t)])
            .unwrap_or_default();
        athena_in(
            self.path(),
            &all,
            &env,
            &["ATHENA_API_ADMIN_TOKEN", "ATHENA_DATA_DIR", "ATHENA_LOG"],
        )
    }

    /// `athena ARGS` with the right token; must succeed; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.cli_with(args, Some(TOKEN));
        let (out, err) = text(&o);
        assert!(o.status.success(), "athena {args:?} failed:\n{out}\n{err}");
        assert!(!err.contains("panicked"), "{err}");
        out
    }

    /// Starts the agent with the token set; waits for its API and first tick.
    fn start(&self, log_name: &str) -> (Running, PathBuf) {
        let log = self.path().join(log_name);
        let args = self.global_args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let agent = spawn_run(&args, &[("ATHENA_API_ADMIN_TOKEN", TOKEN)], &log);
        wait_for(&log, "athena: API on http://", LONG);
        wait_for(&log, "first tick", LONG);
        (agent, log)
    }

    /// The API's address from the runtime file.
    fn address(&self) -> String {
        let bytes = std::fs::read(self.data().join("api.json")).unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        v["address"].as_str().unwrap().to_string()
    }

    /// Stops the agent cleanly (SIGINT) and checks that it removed its runtime file.
    fn stop(&self, mut agent: Running, log: &Path) {
        signal(&agent, "-INT");
        let status = wait_exit(&mut agent, LONG, log);
        assert!(
            status.success(),
            "{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        assert!(!self.data().join("api.json").exists());
    }
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn json_lines(s: &str) -> Vec<Value> {
    s.lines().map(json).collect()
}

/// `v` without the fields at `pointers` (`/status/published_wall_ms`).
fn without(v: &Value, pointers: &[&str]) -> Value {
    let mut v = v.clone();
    for p in pointers {
        let (parent, key) = p.rsplit_once('/').unwrap();
        if let Some(Value::Object(m)) = v.pointer_mut(parent) {
            m.remove(key);
        }
    }
    v
}

/// The shape of a JSON value: object keys and value kinds, recursively (arrays by their first
/// element).
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(a) => Value::Array(a.first().map(shape).into_iter().collect()),
        Value::Number(_) => "number".into(),
        Value::String(_) => "string".into(),
        Value::Bool(_) => "bool".into(),
        Value::Null => Value::Null,
    }
}

/// Puts `n` pool observations of the last minutes into a new store under `data`.
fn seed_memories(data: &Path, n: u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    support::seed_memories(data, n, now - 600_000);
}

const READS: &[&[&str]] = &[
    &["status", "--json"],
    &["risk", "status", "--json"],
    &["memory", "stats", "--json"],
    &["journal", "--json", "--limit", "1000"],
    &["checkpoint", "list", "--json"],
    &["sync", "status", "--json"],
    &["memory", "recall", "--limit", "1000"],
    &[
        "memory", "recall", "--pool", "POOL1", "--since", "1h", "--limit", "5",
    ],
    &["journal", "--kind", "control", "--since", "1h", "--json"],
];

#[test]
fn read_commands_answer_the_same_through_the_agent_and_from_the_store() {
    let d = Dir::new();
    seed_memories(&d.data(), 30);
    let (agent, log) = d.start("agent.log");
    // Something in the journal and the risk state to compare.
    d.ok(&["risk", "stop", "--reason", "compare"]);
    let running: Vec<String> = READS.iter().map(|a| d.ok(a)).collect();
    assert!(d.ok(&["status"]).contains("(agent running)"));
    assert!(d.ok(&["risk", "status"]).contains("breakers:"));
    assert!(d.ok(&["memory", "stats"]).contains("by type:"));
    assert!(d.ok(&["sync", "status"]).contains("outbox:"));
    d.stop(agent, &log);
    let stopped: Vec<String> = READS.iter().map(|a| d.ok(a)).collect();

    // status: the same agent state; what says where it came from differs.
    let (r, s) = (json(&running[0]), json(&stopped[0]));
    assert_eq!(
        (&r["running"], &s["running"]),
        (&true.into(), &false.into())
    );
    assert_eq!(r["stale"], false);
    let volatile = [
        "/running",
        "/status/published_wall_ms",
        "/status/stale_after_wall_ms",
    ];
    assert_eq!(without(&r, &volatile), without(&s, &volatile));

    // risk status, memory stats, journal, recall: equal.
    assert_eq!(json(&running[1]), json(&stopped[1]), "risk status");
    assert_eq!(json(&running[2]), json(&stopped[2]), "memory stats");
    let (rj, sj) = (json_lines(&running[3]), json_lines(&stopped[3]));
    assert!(!rj.is_empty());
    assert_eq!(rj, sj, "journal");
    let recalled = json_lines(&running[6]);
    assert!(recalled.len() >= 30, "{}", running[6]);
    assert_eq!(recalled, json_lines(&stopped[6]), "memory recall");
    let filtered = json_lines(&running[7]);
    assert_eq!(filtered.len(), 5, "{}", running[7]);
    assert_eq!(filtered, json_lines(&stopped[7]), "memory recall --pool");
    let control = json_lines(&running[8]);
    assert_eq!(control.len(), 1, "{}", running[8]);
    assert_eq!(control, json_lines(&stopped[8]), "journal --kind control");

    // checkpoint list: the stop adds its shutdown checkpoint.
    let (rc, sc) = (json(&running[4]), json(&stopped[4]));
    let (rc, sc) = (rc.as_array().unwrap(), sc.as_array().unwrap());
    assert_eq!(sc.len(), rc.len() + 1, "{rc:?}\n{sc:?}");
    assert_eq!(&sc[..rc.len()], &rc[..]);

    // sync status: the same shape; the shutdown's checkpoint and drain change the counts.
    assert_eq!(
        shape(&json(&running[5])),
        shape(&json(&stopped[5])),
        "sync status"
    );
}

#[test]
fn controls_go_through_the_agent_with_its_token() {
    let d = Dir::new();
    let (agent, log) = d.start("agent.log");
    let address = d.address();

    let out = d.ok(&["risk", "stop", "--reason", "cli api stop"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].contains("cli api stop"), "{out}");
    json(lines[0]);
    assert!(out.contains("trading state: "), "{out}");
    assert!(
        out.contains("pending intents in the store: not known through the API"),
        "{out}"
    );

    let (code, body) = http_get(&address, "/risk/status");
    assert_eq!(code, 200, "{body}");
    let risk = json(&body);
    assert_eq!(risk["state"]["operator_stop"]["reason"], "cli api stop");
    let control = json_lines(&d.ok(&["journal", "--kind", "control", "--json"]));
    assert!(
        control[0].to_string().contains("cli api stop"),
        "{control:?}"
    );

    // A wrong token and none: the API's message, exit 1, the token never printed.
    let wrong = "wrong-token-0123456789abcdef";
    let o = d.cli_with(&["risk", "resume", "--reason", "x"], Some(wrong));
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    assert!(err.contains("the admin token is wrong"), "{err}");
    assert!(!out.contains(wrong) && !err.contains(wrong));
    let o = d.cli_with(&["risk", "resume", "--reason", "x"], None);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("set ATHENA_API_ADMIN_TOKEN"), "{err}");
    assert!(!err.contains(TOKEN));

    // A control the agent refuses is the operator's input: exit 2.
    let o = d.cli_with(&["risk", "resume", "--reason", " "], Some(TOKEN));
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));

    let out = d.ok(&[
        "risk",
        "override",
        "risk.max_position_fraction",
        "0.05",
        "--for",
        "2h",
        "--reason",
        "cli api override",
    ]);
    assert!(out.contains("trading state: "), "{out}");
    let status = json(&d.ok(&["risk", "status", "--json"]));
    assert_eq!(status["overrides"].as_array().unwrap().len(), 1, "{status}");
    d.ok(&["risk", "reset", "rapid_loss", "--reason", "cli api reset"]);
    let out = d.ok(&["risk", "resume", "--reason", "cli api resume"]);
    assert!(out.contains("cli api resume"), "{out}");

    // Maintenance through the agent.
    let before = json(&d.ok(&["checkpoint", "list", "--json"]));
    let out = d.ok(&["checkpoint", "create"]);
    assert!(out.starts_with("created "), "{out}");
    let after = json(&d.ok(&["checkpoint", "list", "--json"]));
    assert_eq!(
        after.as_array().unwrap().len(),
        before.as_array().unwrap().len() + 1
    );
    assert!(d.ok(&["checkpoint", "verify"]).contains(": valid"));
    let report = json(&d.ok(&["memory", "prune"]));
    assert!(report.get("removed_low_confidence").is_some(), "{report}");
    let out = d.ok(&["sync", "flush"]);
    assert!(
        out.contains("sync flush: 0 rows left in the outbox"),
        "{out}"
    );

    // What needs the store to itself says so.
    for args in [
        &["checkpoint", "restore"][..],
        &["store", "verify"],
        &["store", "stats"],
        &["sync", "verify"],
    ] {
        let o = d.cli_with(args, Some(TOKEN));
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {out}\n{err}");
        assert!(err.contains("needs the agent stopped"), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    d.stop(agent, &log);

    // The store holds what the agent was told, with the reasons.
    let control = d.ok(&["journal", "--kind", "control", "--json"]);
    for reason in [
        "cli api stop",
        "cli api override",
        "cli api reset",
        "cli api resume",
    ] {
        assert!(control.contains(reason), "{reason}: {control}");
    }
}

#[test]
fn status_with_a_stale_runtime_file_reads_the_store() {
    let d = Dir::new();
    let (agent, log) = d.start("agent.log");
    d.stop(agent, &log);
    let expected = json(&d.ok(&["status", "--json"]));
    assert_eq!(expected["running"], false);

    // A pid that has exited.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    child.wait().unwrap();
    let file = d.data().join("api.json");
    std::fs::write(
        &file,
        format!(r#"{{"pid":{},"address":"127.0.0.1:9"}}"#, child.id()),
    )
    .unwrap();
    assert_eq!(json(&d.ok(&["status", "--json"])), expected);

    // A live pid (this test's) where nothing answers: connection refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        &file,
        format!(
            r#"{{"pid":{},"address":"127.0.0.1:{port}"}}"#,
            std::process::id()
        ),
    )
    .unwrap();
    assert_eq!(json(&d.ok(&["status", "--json"])), expected);
    assert!(d.ok(&["risk", "status"]).contains("breakers:"));
}
