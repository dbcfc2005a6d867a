//! The dashboard in a real browser: `web/tests/dashboard.test.mjs` drives Debian's chromium
//! with playwright-core (from npm, `web/package-lock.json`) against the athena binary cargo
//! built, which the script starts, stops and restarts itself. What it checks is listed in that
//! file; this test runs it and fails with its report.
//!
//! `scripts/test.sh` installs chromium and playwright-core first (`scripts/tools.sh`); without
//! them this test fails and says how to install them.

use std::path::Path;
use std::process::Command;

#[test]
fn the_dashboard_works_in_chromium_against_a_running_agent() {
    let web =
        Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo test")).join("web");
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
    let screenshots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    let out = Command::new("node")
        .arg("tests/dashboard.test.mjs")
        .current_dir(&web)
        .env("DASHBOARD_AGENT_BIN", env!("CARGO_BIN_EXE_athena"))
        .env("DASHBOARD_SCREENSHOTS", &screenshots)
        .env("DASHBOARD_CHROMIUM", &chromium)
        .output()
        .expect("node runs (Node.js 20 from Debian or nodejs.org)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the browser test failed:\n{report}");
    assert!(report.contains("# fail 0"), "{report}");
    for shot in [
        "dashboard-1280x800.png",
        "dashboard-phone.png",
        "dashboard-stream-lost.png",
    ] {
        assert!(screenshots.join(shot).is_file(), "{shot} was not written");
    }
    println!("{report}");
}
