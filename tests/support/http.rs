//! A running agent and a client for its HTTP API, for the tests that use it as an operator
//! does.

use super::{Running, signal, spawn_run, wait_exit, wait_for};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The admin token the tests start agents with.
pub const TOKEN: &str = "test-admin-token-0123456789";

/// A running agent and a client for its API.
pub struct Agent {
    pub child: Running,
    pub log: PathBuf,
    pub dir: PathBuf,
    pub base: String,
    pub rt: tokio::runtime::Runtime,
    pub http: reqwest::Client,
}

impl Agent {
    /// Starts `athena run` on `dir` with `env` and waits for its API.
    pub fn start(dir: &Path, env: &[(&str, &str)]) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let log = dir.join("agent.log");
        let data = dir.join("data");
        let child = spawn_run(&["--data-dir", data.to_str().unwrap()], env, &log);
        let line = wait_for(&log, "athena: API on http://", Duration::from_secs(60));
        let address = line
            .split("http://")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap()
            .to_string();
        Self {
            child,
            log,
            dir: data,
            base: format!("http://{address}"),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            http: reqwest::Client::new(),
        }
    }

    pub fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        self.rt.block_on(async {
            let r = request.send().await.unwrap();
            let status = r.status().as_u16();
            let text = r.text().await.unwrap();
            let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
            (status, body)
        })
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.http.get(format!("{}{path}", self.base)))
    }

    pub fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut r = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        self.send(r)
    }

    /// Polls `path` until `ok` accepts its body, or panics after `limit`.
    pub fn wait_until(&self, path: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            let (status, body) = self.get(path);
            if status == 200 && ok(&body) {
                return body;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "{what}: GET {path} gave {status} {body}\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops it cleanly and checks the exit.
    pub fn stop(mut self) -> String {
        signal(&self.child, "-INT");
        let status = wait_exit(&mut self.child, Duration::from_secs(60), &self.log);
        assert!(status.success(), "{}", self.log());
        self.log()
    }
}

/// Breaker `name` of a `/risk/status` answer.
pub fn breaker<'a>(risk: &'a Value, name: &str) -> &'a Value {
    risk["state"]["breakers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["kind"] == name)
        .unwrap_or_else(|| panic!("no breaker {name} in {risk}"))
}
