//! schemathesis (PyPI) fuzzes the live agent's API from its own OpenAPI document: every
//! operation, with the admin token, every check but positive-data acceptance. The run must
//! find no server error and no response that breaks the schema.
//!
//! Positive-data acceptance is left out on purpose: some schema-valid input is refused by
//! design, with a 400 that names why (exit-all with `confirm: false`; an override value
//! outside its limit's own range, which differs per limit; an override longer than 24 h).
//!
//! `SCHEMATHESIS_BIN` names the `st` binary (scripts/test.sh installs it with
//! scripts/tools.sh); without it, `st` on the PATH.

mod support;

use std::process::Command;
use support::http::{Agent, TOKEN};

#[test]
fn schemathesis_finds_no_server_error_and_no_response_off_the_schema() {
    let st = std::env::var("SCHEMATHESIS_BIN").unwrap_or_else(|_| "st".into());
    let tmp = tempfile::tempdir().unwrap();
    // Trading, so positions, trades and decisions are there to be read (and closed).
    let agent = Agent::start(
        tmp.path(),
        &[
            ("ATHENA_API_ADMIN_TOKEN", TOKEN),
            ("ATHENA_AGENT_OBSERVATION_PERIOD", "2h"),
        ],
    );
    agent.wait_until("/trades", "a first trade", |t| {
        !t.as_array().unwrap().is_empty()
    });
    let out = Command::new(&st)
        // Its cache of found failures goes with the test's directory, not into the checkout.
        .current_dir(tmp.path())
        .arg("run")
        .arg(format!("{}/openapi.json", agent.base))
        .args([
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
        ])
        .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
        // The stream never ends: it has its own test.
        .args(["--exclude-path", "/stream"])
        .args(["--max-examples", "50", "--workers", "2", "--seed", "1"])
        // One retry of a request whose connection closed before any answer (seen once in CI
        // on GET /equity, not reproduced in later runs): a server that died or hung would fail
        // the retry too, and every answer is still checked.
        .args(["--request-retries", "1"])
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {st} ({e}): scripts/tools.sh installs schemathesis")
        });
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The summary goes to the test's output: the note quotes it.
    let summary = report
        .rsplit_once("SUMMARY")
        .map_or(report.as_str(), |(_, s)| s);
    println!("schemathesis summary:{summary}");
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{report}"
    );
    // Warnings may remain (checkpoints on demand answer 429 within 10 s of the last one, so
    // schemathesis reports that operation as rate limited); failures and errors may not.
    assert!(
        !summary.contains("Failures:") && !summary.contains("Errors:"),
        "{report}"
    );
    agent.stop();
}
