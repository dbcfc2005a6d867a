//! Loading tests: the shipped files, env overrides, unknown keys, all problems at once, secrets.

use athena_config::{Config, ConfigError, DEFAULT_CONFIG_TOML, load_with_env};
use std::path::{Path, PathBuf};
use toml::{Table, Value};

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn problems(result: Result<Config, ConfigError>) -> Vec<String> {
    match result {
        Err(ConfigError::Invalid(p)) => p.iter().map(|p| p.to_string()).collect(),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("expected problems"),
    }
}

fn write(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("athena.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn embedded_default_equals_schema_defaults() {
    let loaded = load_with_env(None, no_env()).expect("embedded default loads");
    assert_eq!(loaded, Config::default());
}

#[test]
fn shipped_file_lists_every_key_with_a_comment() {
    let shipped: Table = DEFAULT_CONFIG_TOML.parse().unwrap();
    let defaults = Table::try_from(Config::default()).unwrap();
    fn walk(d: &Table, s: &Table, prefix: &str, missing: &mut Vec<String>) {
        for (k, v) in d {
            let path = format!("{prefix}{k}");
            match (v, s.get(k)) {
                (_, None) => missing.push(path),
                (Value::Table(dt), Some(Value::Table(st))) => {
                    walk(dt, st, &format!("{path}."), missing)
                }
                _ => {}
            }
        }
    }
    let mut missing = Vec::new();
    walk(&defaults, &shipped, "", &mut missing);
    assert!(
        missing.is_empty(),
        "keys missing from config/athena.toml: {missing:?}"
    );
    for line in DEFAULT_CONFIG_TOML.lines() {
        let t = line.trim();
        if t.contains(" = ") && !t.starts_with('#') {
            assert!(t.contains('#'), "key without a comment in athena.toml: {t}");
        }
    }
}

#[test]
fn every_shipped_file_parses_and_validates() {
    // Read at run time: a test binary reused from a target directory shared with another
    // checkout must look at this checkout.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo test");
    let root = Path::new(&manifest_dir);
    let mut files = vec![root.join("athena.toml")];
    // Every Athena configuration there (the directory also holds a Prometheus scrape config).
    for entry in std::fs::read_dir(root.join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            files.push(path);
        }
    }
    assert!(files.len() >= 3);
    for f in files {
        load_with_env(Some(&f), no_env()).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    }
}

#[test]
fn reports_every_problem_with_its_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        r#"
[risk]
max_position_fraction = 1.5
max_token_fraction = "half"
colour = "red"
[memory]
hot_max_age = "soon"
[memory.quotas]
observation = 0
bogus = 3
[nonsense]
x = 1
[llm]
batch_window = "1s"
"#,
    );
    let p = problems(load_with_env(Some(&path), no_env()));
    let has = |needle: &str| p.iter().any(|s| s.contains(needle));
    assert!(has("risk.colour: unknown key"), "{p:?}");
    assert!(
        has("llm.batch_window: removed: the advisor's only caller is the tick"),
        "a retired key says why: {p:?}"
    );
    assert!(has("nonsense: unknown key"), "{p:?}");
    assert!(has("risk.max_token_fraction"), "{p:?}");
    assert!(has("memory.hot_max_age"), "{p:?}");
    assert!(
        has("memory.quotas.bogus: names no memory type or category"),
        "{p:?}"
    );
    // max_position_fraction is valid as a type, so semantic validation sees it only once the
    // section types; the section failed on max_token_fraction, so here check it separately.
    let path = write(
        dir.path(),
        "[risk]\nmax_position_fraction = 1.5\n[memory.quotas]\nobservation = 0\n",
    );
    let p = problems(load_with_env(Some(&path), no_env()));
    assert!(
        p.contains(&"risk.max_position_fraction: must be in (0, 1], got 1.5".to_string()),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|s| s.starts_with("memory.quotas.observation: must be at least 1")),
        "{p:?}"
    );
}

#[test]
fn syntax_error_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "[agent]\nseed = 1\nbroken = = 2\n");
    let p = problems(load_with_env(Some(&path), no_env()));
    assert_eq!(p.len(), 1);
    assert!(p[0].contains("line 3"), "{p:?}");
}

#[test]
fn missing_file_is_a_clear_error() {
    let err = load_with_env(Some(Path::new("/nonexistent/athena.toml")), no_env()).unwrap_err();
    assert!(matches!(err, ConfigError::Unreadable { .. }));
    assert!(err.to_string().contains("/nonexistent/athena.toml"));
}

#[test]
fn environment_overrides_reach_nested_and_open_tables() {
    let c = load_with_env(
        None,
        env(&[
            ("ATHENA_RISK_MAX_POSITION_FRACTION", "0.1"),
            ("ATHENA_MEMORY_RETENTION_OBSERVATION", "10d"),
            ("ATHENA_MEMORY_QUOTAS_PATTERN", "42"),
            ("ATHENA_AGENT_DATA_DIR", "/tmp/athena-x"),
            ("ATHENA_GAS_HARD_CAP_GWEI", "80"),
            ("ATHENA_API_ENABLED", "false"),
            ("ATHENA_CONFIG", "ignored: not a key"),
        ]),
    )
    .unwrap();
    assert_eq!(c.risk.max_position_fraction, 0.1);
    assert_eq!(c.memory.retention["observation"].as_secs(), 10 * 86_400);
    assert_eq!(c.memory.quotas["pattern"], 42);
    assert_eq!(c.agent.data_dir, PathBuf::from("/tmp/athena-x"));
    assert_eq!(c.gas.hard_cap_gwei, 80.0);
    assert!(!c.api.enabled);
}

#[test]
fn unknown_or_invalid_environment_overrides_are_errors() {
    let p = problems(load_with_env(
        None,
        env(&[
            ("ATHENA_RSIK_MAX_POSITION_FRACTION", "0.1"),
            ("ATHENA_RISK_MAX_POSITIONS", "many"),
            ("ATHENA_LLM_BATCH_WINDOW", "1s"),
        ]),
    ));
    assert!(p.iter().any(|s| s.starts_with("ATHENA_RSIK_MAX_POSITION_FRACTION: names no configuration key")), "{p:?}");
    assert!(
        p.iter().any(|s| s.starts_with(
            "ATHENA_LLM_BATCH_WINDOW: llm.batch_window removed: the advisor's only caller"
        )),
        "a retired key says why: {p:?}"
    );
    assert!(
        p.iter().any(|s| s.starts_with("risk.max_positions")),
        "{p:?}"
    );
}

#[test]
fn a_signing_key_file_others_may_read_is_refused_and_never_echoed() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    let key = "0x0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    let path = write(
        dir.path(),
        &format!(
            "[chain]\nprivate_key_file = {:?}\n",
            key_file.display().to_string()
        ),
    );
    for mode in [0o644, 0o640, 0o604, 0o660] {
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(mode)).unwrap();
        let p = problems(load_with_env(Some(&path), no_env()));
        assert_eq!(p.len(), 1, "{mode:o}: {p:?}");
        assert!(
            p[0].starts_with("chain.private_key_file: secret file")
                && p[0].contains(&format!("has mode {mode:04o}"))
                && p[0].contains("chmod 600"),
            "{p:?}"
        );
        assert!(!p[0].contains(&key[2..]), "the key was echoed: {p:?}");
    }
    // A file named by ATHENA_CHAIN_PRIVATE_KEY_FILE is held to the same rule and read alike.
    let by_env = || env(&[("ATHENA_CHAIN_PRIVATE_KEY_FILE", key_file.to_str().unwrap())]);
    let p = problems(load_with_env(None, by_env()));
    assert!(p.len() == 1 && p[0].contains("chmod 600"), "{p:?}");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let c = load_with_env(None, by_env()).unwrap();
    assert_eq!(c.secrets.chain_private_key.as_ref().unwrap().expose(), key);
    let c = load_with_env(Some(&path), no_env()).unwrap();
    assert_eq!(c.secrets.chain_private_key.as_ref().unwrap().expose(), key);
    assert!(!format!("{c:?}").contains(&key[2..]));
    // Other secrets keep their files' modes as they are.
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "file-token-0123456789").unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let path = write(
        dir.path(),
        &format!(
            "[api]\nadmin_token_file = {:?}\n",
            token_file.display().to_string()
        ),
    );
    assert!(load_with_env(Some(&path), no_env()).is_ok());
}

#[test]
fn secrets_come_from_env_or_file_and_are_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "file-token\n").unwrap();
    let path = write(
        dir.path(),
        &format!(
            "[api]\nadmin_token_file = {:?}\n",
            token_file.display().to_string()
        ),
    );
    let c = load_with_env(Some(&path), env(&[("ATHENA_LLM_API_KEY", "sk-env")])).unwrap();
    assert_eq!(
        c.secrets.api_admin_token.as_ref().unwrap().expose(),
        "file-token"
    );
    assert_eq!(c.secrets.llm_api_key.as_ref().unwrap().expose(), "sk-env");
    let shown = c.to_redacted_toml();
    let debug = format!("{c:?}");
    for text in [&shown, &debug] {
        assert!(
            !text.contains("file-token") && !text.contains("sk-env"),
            "secret leaked: {text}"
        );
    }
    // A secret written in the file is refused with a pointer to the right place.
    let path = write(dir.path(), "[api]\nadmin_token = \"plain\"\n");
    let p = problems(load_with_env(Some(&path), no_env()));
    assert!(p[0].contains("ATHENA_API_ADMIN_TOKEN"), "{p:?}");
    // A named secret file that is missing is an error, not an absent secret.
    let path = write(dir.path(), "[llm]\napi_key_file = \"/nonexistent/key\"\n");
    let p = problems(load_with_env(Some(&path), no_env()));
    assert!(
        p[0].starts_with("llm.api_key_file: cannot read secret file"),
        "{p:?}"
    );
}

#[test]
fn cross_field_rules() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "[market]\nsource = \"replay\"\n[executor]\nkind = \"chain\"\n[memory]\nwarm_max_age = \"1h\"\n",
    );
    let p = problems(load_with_env(Some(&path), no_env()));
    for needle in [
        "market.replay_path",
        "executor.kind",
        "chain.rpc_url",
        "chain.router_address",
        "chain.private_key_file",
        "memory.warm_max_age",
    ] {
        assert!(
            p.iter().any(|s| s.starts_with(needle)),
            "missing {needle} in {p:?}"
        );
    }
}

#[test]
fn the_chain_executor_needs_the_chain_source_and_the_chain_source_needs_its_pools() {
    let dir = tempfile::tempdir().unwrap();
    let pool = "0xEF0d8eedB74E3319c6b7b5381b7C7D08Ab4dE87C";
    let path = write(
        dir.path(),
        &format!(
            "[agent]\nclock = \"real\"\n[market]\nsource = \"chain\"\n[executor]\nkind = \"chain\"\n\
             [chain]\nrpc_url = \"http://127.0.0.1:8545\"\n\
             router_address = \"0x4752ba5dbc23f44d87826276bf6fd6b1c372ad24\"\n\
             pools = [{{ address = \"{pool}\" }}]\n"
        ),
    );
    let key = "0x0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let loaded = load_with_env(Some(&path), env(&[("ATHENA_CHAIN_PRIVATE_KEY", key)]));
    assert!(
        loaded.is_ok(),
        "the chain executor on the chain source is valid: {:?}",
        loaded.err()
    );
    // It trades what the chain source reads: with another source it is refused.
    let path = write(
        dir.path(),
        "[executor]\nkind = \"chain\"\n[chain]\nrpc_url = \"http://127.0.0.1:8545\"\n\
         router_address = \"0x4752ba5dbc23f44d87826276bf6fd6b1c372ad24\"\n",
    );
    let p = problems(load_with_env(
        Some(&path),
        env(&[("ATHENA_CHAIN_PRIVATE_KEY", key)]),
    ));
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("executor.kind: \"chain\" trades the pools the chain source reads"),
        "{p:?}"
    );

    // The chain source alone (paper trading on chain data) is valid; it needs pools, a real
    // clock, distinct addresses and token symbols.
    let path = write(
        dir.path(),
        &format!(
            "[market]\nsource = \"chain\"\n[chain]\nrpc_url = \"http://127.0.0.1:8545\"\n\
             quote_token = \" \"\nlog_range_blocks = 0\n\
             pools = [{{ address = \"{pool}\" }}, {{ address = \"{}\" }}, {{ address = \"0x12\" }}]\n",
            pool.to_lowercase()
        ),
    );
    let p = problems(load_with_env(Some(&path), env(&[])));
    assert_eq!(
        p,
        [
            format!(
                "chain.pools[1].address: {} is listed twice",
                pool.to_lowercase()
            ),
            "chain.pools[2].address: must be a 0x-prefixed 20-byte address, got \"0x12\"".into(),
            "chain.quote_token: must name a token symbol".into(),
            "chain.log_range_blocks: must be at least 1, got 0".into(),
            "agent.clock: must be \"real\" with market.source = \"chain\": a live chain cannot \
             be accelerated"
                .into(),
        ]
    );

    // A pool of an unknown kind is one problem, not also "lists no pool".
    let path = write(
        dir.path(),
        &format!(
            "[agent]\nclock = \"real\"\n[market]\nsource = \"chain\"\n[chain]\n\
             rpc_url = \"http://127.0.0.1:8545\"\n\
             pools = [{{ address = \"{pool}\", kind = \"uniswap_v3\" }}]\n"
        ),
    );
    let p = problems(load_with_env(Some(&path), env(&[])));
    assert!(
        p.len() == 1 && p[0].starts_with("chain.pools: unknown variant `uniswap_v3`"),
        "{p:?}"
    );

    for url in ["not a url", "ftp://127.0.0.1:8545", "http://"] {
        let path = write(
            dir.path(),
            &format!(
                "[agent]\nclock = \"real\"\n[market]\nsource = \"chain\"\n[chain]\n\
                 rpc_url = {url:?}\npools = [{{ address = \"{pool}\" }}]\n"
            ),
        );
        let p = problems(load_with_env(Some(&path), env(&[])));
        assert_eq!(
            p,
            [format!(
                "chain.rpc_url: must be an http:// or https:// URL with a host, got {url:?}"
            )]
        );
    }
}

#[test]
fn athena_data_dir_sets_agent_data_dir() {
    let c = load_with_env(None, env(&[("ATHENA_DATA_DIR", "/srv/athena")])).unwrap();
    assert_eq!(c.agent.data_dir, PathBuf::from("/srv/athena"));
    let same = env(&[
        ("ATHENA_DATA_DIR", "/srv/a"),
        ("ATHENA_AGENT_DATA_DIR", "/srv/a"),
    ]);
    assert_eq!(
        load_with_env(None, same).unwrap().agent.data_dir,
        PathBuf::from("/srv/a")
    );
    let p = problems(load_with_env(
        None,
        env(&[
            ("ATHENA_DATA_DIR", "/srv/a"),
            ("ATHENA_AGENT_DATA_DIR", "/srv/b"),
        ]),
    ));
    assert_eq!(
        p,
        ["ATHENA_DATA_DIR: sets the same key as ATHENA_AGENT_DATA_DIR, to another value"]
    );
}

#[test]
fn a_huge_bad_value_is_quoted_by_a_short_prefix() {
    let huge = "y".repeat(1 << 20);
    let p = problems(load_with_env(
        None,
        env(&[
            ("ATHENA_AGENT_TICK_INTERVAL", huge.as_str()),
            ("ATHENA_AGENT_AGENT_ID", huge.as_str()),
        ]),
    ));
    assert_eq!(p.len(), 2, "{p:?}");
    for line in &p {
        assert!(
            line.len() < 400 && !line.contains('\n'),
            "{} bytes",
            line.len()
        );
    }
    assert!(
        p.iter()
            .any(|l| l.starts_with("agent.agent_id: must be 1 to 128 characters, got \"yyy"))
    );
    assert!(
        p.iter()
            .any(|l| l.starts_with("agent.tick_interval: ") && l.contains("bytes]…"))
    );
}

#[test]
fn a_signing_key_that_is_no_key_is_refused_by_config_check_without_repeating_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "[agent]\nclock = \"real\"\n[market]\nsource = \"chain\"\n[executor]\nkind = \"chain\"\n\
         [chain]\nrpc_url = \"http://127.0.0.1:8545\"\n\
         router_address = \"0x4752ba5dbc23f44d87826276bf6fd6b1c372ad24\"\n\
         pools = [{ address = \"0xEF0d8eedB74E3319c6b7b5381b7C7D08Ab4dE87C\" }]\n",
    );
    let zero = format!("0x{}", "0".repeat(64));
    let order = "0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141";
    for (key, why) in [
        (
            "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab36",
            "is not 64 hex digits",
        ),
        (
            "not-a-key-at-all-not-a-key-at-all-not-a-key-at-all-not-a-key-ab",
            "is not 64 hex digits",
        ),
        (zero.as_str(), "is zero"),
        (order, "is not below the secp256k1 group order"),
    ] {
        let p = problems(load_with_env(
            Some(&path),
            env(&[("ATHENA_CHAIN_PRIVATE_KEY", key)]),
        ));
        assert_eq!(p.len(), 1, "{key}: {p:?}");
        assert!(
            p[0].starts_with("chain.private_key_file: the signing key"),
            "{p:?}"
        );
        assert!(p[0].contains(why), "{key}: {p:?}");
        assert!(!p[0].contains(&key[2..]), "the key is repeated: {p:?}");
    }
    // One below the order is a key (with or without 0x).
    let highest = "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364140";
    let loaded = load_with_env(Some(&path), env(&[("ATHENA_CHAIN_PRIVATE_KEY", highest)]));
    assert!(loaded.is_ok(), "{:?}", loaded.err());
}

#[test]
fn the_advisor_needs_a_model_and_an_endpoint_with_a_host() {
    let dir = tempfile::tempdir().unwrap();
    for (endpoint, ok) in [
        ("http://127.0.0.1:8080/v1", true),
        ("https://api.openai.com/v1", true),
        ("http://", false),
        ("http://:8080/v1", false),
        ("ftp://x", false),
    ] {
        let path = write(
            dir.path(),
            &format!("[llm]\nenabled = true\nmodel = \"m\"\nendpoint = \"{endpoint}\"\n"),
        );
        let loaded = load_with_env(Some(&path), no_env());
        if ok {
            assert!(loaded.is_ok(), "{endpoint}: {:?}", loaded.err());
        } else {
            let p = problems(loaded);
            assert!(p[0].starts_with("llm.endpoint:"), "{endpoint}: {p:?}");
        }
    }
    let path = write(
        dir.path(),
        "[llm]\nenabled = true\n[llm.tolerance]\napr_pct = -1\n",
    );
    let p = problems(load_with_env(Some(&path), no_env()));
    assert!(p.iter().any(|x| x.starts_with("llm.model:")), "{p:?}");
    assert!(
        p.iter().any(|x| x.starts_with("llm.tolerance.apr_pct:")),
        "{p:?}"
    );
}
