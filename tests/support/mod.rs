//! Driving the real `athena` binary as an operator does: a child killed if the test panics,
//! signals, and waiting on what it prints (readiness, never sleeps).

#![allow(dead_code)]

pub mod chain_agent;
pub mod devnet;
pub mod http;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// This checkout's root, read when the test runs: a test binary built by another checkout
/// into a shared target directory (and found fresh there) must still use this checkout's
/// scripts and files.
pub fn checkout() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo test"))
}

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_athena");

/// `athena` with its API on a free loopback port: tests run agents side by side, and the
/// default port would let only one of them start (the CLI finds the port in `api.json`).
pub fn command() -> Command {
    let mut c = Command::new(BIN);
    c.env("ATHENA_API_BIND", "127.0.0.1:0");
    c
}

/// A running `athena` child, killed with SIGKILL if the test panics before it is waited for
/// (no agent outlives its test).
pub struct Running(pub Child);

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts `athena run` (`args` before `run`, `env` added) with stdout and stderr in `log`.
pub fn spawn_run(args: &[&str], env: &[(&str, &str)], log: &Path) -> Running {
    let mut all = args.to_vec();
    all.push("run");
    spawn(&all, env, log)
}

/// Starts `athena ARGS` (`env` added) with stdout and stderr in `log`.
pub fn spawn(args: &[&str], env: &[(&str, &str)], log: &Path) -> Running {
    let out = std::fs::File::create(log).unwrap();
    let mut c = command();
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    Running(
        c.stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap(),
    )
}

/// Sends `sig` (`-TERM`, `-HUP`, …) to `child`.
pub fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} failed");
}

/// Waits until `log` holds a line containing `needle`, or panics after `limit`; returns it.
pub fn wait_for(log: &Path, needle: &str, limit: Duration) -> String {
    wait_line(log, needle, |l| l.contains(needle), limit)
}

/// Waits until `log` holds a line `matches` accepts (`what` describes it), or panics after
/// `limit`; returns it.
pub fn wait_line(
    log: &Path,
    what: &str,
    matches: impl Fn(&str) -> bool,
    limit: Duration,
) -> String {
    let started = Instant::now();
    loop {
        if let Ok(f) = std::fs::File::open(log) {
            let found = BufReader::new(f)
                .lines()
                .map_while(Result::ok)
                .find(|l| matches(l));
            if let Some(line) = found {
                return line;
            }
        }
        assert!(
            started.elapsed() < limit,
            "no {what:?} in {} after {limit:?}:\n{}",
            log.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for `child` to exit, or panics after `limit`.
pub fn wait_exit(child: &mut Running, limit: Duration, log: &Path) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            started.elapsed() < limit,
            "the agent did not exit within {limit:?}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `athena ARGS`; returns (success, stdout + stderr).
pub fn athena(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut c = command();
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A tmpfs of `megabytes` mounted at `dir`, unmounted when dropped (the tests run as root, as CI
/// does; a machine where mounting is refused fails the test with the reason).
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    pub fn mount(dir: &Path, megabytes: u64) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cannot mount a tmpfs for the full-disk test (needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(dir.to_path_buf())
    }

    /// Writes a file until the file system is full; returns its path.
    pub fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 1 << 20];
        loop {
            match f.write_all(&chunk) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        // What a partial write left fits; nothing more does.
        let _ = f.sync_all();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Runs `athena ARGS` in `dir` with `env` added and the variables in `unset` removed (the
/// test's own environment must not choose a config or a token by accident); returns the
/// output.
pub fn athena_in(
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    unset: &[&str],
) -> std::process::Output {
    let mut c = Command::new(BIN);
    c.args(args).current_dir(dir).env_remove("ATHENA_CONFIG");
    for k in unset {
        c.env_remove(k);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// `GET path` on a plain-HTTP server at `address` (`127.0.0.1:port`): (status, body).
pub fn http_get(address: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(address).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, body.to_string())
}

/// Writes `n` observation memories of pools POOL0..POOL2 into the store in `data`, one a
/// second from `t0` (ms), in one transaction; returns them.
pub fn seed_memories(data: &Path, n: u64, t0: u64) -> Vec<athena_storage::Memory> {
    seed_memories_of(data, n, t0, athena_storage::MemoryType::Observation)
}

/// [`seed_memories`] of type `kind` (a pattern is one document each in the cloud; observations
/// travel in hourly packs).
pub fn seed_memories_of(
    data: &Path,
    n: u64,
    t0: u64,
    kind: athena_storage::MemoryType,
) -> Vec<athena_storage::Memory> {
    use athena_storage::{Category, Memory, Metadata, Source, Store};
    let store = Store::open(data, &athena_config::MemoryConfig::default()).unwrap();
    let ms: Vec<Memory> = (0..n)
        .map(|i| {
            let md = Metadata {
                pool: Some(format!("POOL{}", i % 3)),
                apr: Some(20.0 + i as f64),
                ..Metadata::default()
            };
            Memory::new(
                kind,
                Category::PoolBehavior,
                format!("{} {i} of pool", kind.as_str()),
                md,
                0.8,
                Source::MarketData,
                ulid::Ulid::from_parts(t0 + i * 1000, u128::from(i) + 1),
            )
        })
        .collect();
    store.insert_memories(&ms, t0).unwrap();
    ms
}

/// Runs the browser test `web/<script>` (node's test runner driving Debian's chromium with
/// playwright-core) with `env`; fails with its report unless every test in it passed, and
/// says how to install what is missing. Returns the report.
pub fn browser_test(script: &str, env: &[(&str, &str)]) -> String {
    let web = checkout().join("web");
    assert!(
        web.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run scripts/tools.sh (it runs `npm ci` in web/)"
    );
    let chromium =
        std::env::var("DASHBOARD_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: run scripts/tools.sh (it installs Debian's chromium)"
    );
    let out = Command::new("node")
        .arg(script)
        .current_dir(&web)
        .env("DASHBOARD_CHROMIUM", &chromium)
        .envs(env.iter().copied())
        .output()
        .expect("node runs (Node.js 20 from Debian or nodejs.org)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the browser test failed:\n{report}");
    assert!(report.contains("# fail 0"), "{report}");
    report
}
