//! The dashboard in a real browser: `web/tests/dashboard.test.mjs` drives Debian's chromium
//! with playwright-core (from npm, `web/package-lock.json`) against the athena binary cargo
//! built, which the script starts, stops and restarts itself. What it checks is listed in that
//! file; this test runs it and fails with its report.
//!
//! `scripts/test.sh` installs chromium and playwright-core first (`scripts/tools.sh`); without
//! them this test fails and says how to install them.

mod support;

use std::path::Path;

#[test]
fn the_dashboard_works_in_chromium_against_a_running_agent() {
    let screenshots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    let report = support::browser_test(
        "tests/dashboard.test.mjs",
        &[
            ("DASHBOARD_AGENT_BIN", env!("CARGO_BIN_EXE_athena")),
            ("DASHBOARD_SCREENSHOTS", screenshots.to_str().unwrap()),
        ],
    );
    for shot in [
        "dashboard-1280x800.png",
        "dashboard-phone.png",
        "dashboard-stream-lost.png",
    ] {
        assert!(screenshots.join(shot).is_file(), "{shot} was not written");
    }
    println!("{report}");
}
