//! Loading: file (or the embedded default) → environment overrides → unknown-key check →
//! per-section typing → secrets → validation, collecting every problem on the way.
//!
//! Overrides are `ATHENA_<SECTION>_<KEY>=VALUE`; `<KEY>` may reach into a table
//! (`ATHENA_MEMORY_RETENTION_OBSERVATION=10d`). The value is read as a TOML literal when it
//! parses as one of the same type as the default, else as a string. An `ATHENA_` variable that
//! names no key is an error, so a typo is never silently ignored.

use crate::secret::{SECRET_SLOTS, Secret, SecretSlot};
use crate::{Config, ConfigError, Problem, Secrets};
use serde::de::DeserializeOwned;
use std::path::Path;
use toml::{Table, Value};

/// The shipped default configuration, embedded in the binary.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../athena.toml");

/// `ATHENA_` variables that are not config keys (the last two are test fault hooks: the agent
/// loop stalls after that many ticks, for the heartbeat check; the process kills itself at a
/// point of a chain transaction).
const NON_KEY_VARIABLES: &[&str] = &[
    "ATHENA_CONFIG",
    "ATHENA_LOG",
    "ATHENA_FAULT_STALL_AFTER_TICKS",
    "ATHENA_FAULT_KILL_AFTER",
];

/// Short names of config keys: `ATHENA_DATA_DIR` sets `agent.data_dir` (as `--data-dir` does).
const ALIASES: &[(&str, &str)] = &[("ATHENA_DATA_DIR", "ATHENA_AGENT_DATA_DIR")];

/// Tables whose keys are free (checked by validation, not by the schema).
const OPEN_TABLES: &[&str] = &["memory.retention", "memory.quotas"];
/// Keys that no longer exist, with what to do instead: named, not just "unknown".
const RETIRED_KEYS: &[(&str, &str)] = &[(
    "llm.batch_window",
    "removed: the advisor's only caller is the tick, whose questions arrive together and \
     already go as one call of up to llm.batch_max; delete this line",
)];

/// Loads `path` (or the embedded default) with the process environment's overrides.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
    load_with_env(path, std::env::vars())
}

/// Loads `path` (or the embedded default) with the given environment.
pub fn load_with_env(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let text = match path {
        Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Unreadable {
            path: p.to_path_buf(),
            source,
        })?,
        None => DEFAULT_CONFIG_TOML.to_string(),
    };
    let origin = path.map_or("<embedded default>".to_string(), |p| {
        p.display().to_string()
    });
    let mut problems = Vec::new();
    let mut table = match text.parse::<Table>() {
        Ok(t) => t,
        Err(e) => {
            let msg = e.message().to_string();
            let at = e
                .span()
                .map(|s| line_of(&text, s.start))
                .map_or(String::new(), |l| format!(" (line {l})"));
            return Err(ConfigError::Invalid(vec![Problem::new(
                origin,
                format!("{msg}{at}"),
            )]));
        }
    };
    let defaults = Table::try_from(Config::default()).expect("defaults serialize");
    let mut env: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with("ATHENA_"))
        .collect();
    env.sort();
    apply_env_overrides(&mut table, &defaults, &env, &mut problems);
    // After the overrides: a secret's file may be named by ATHENA_<SECTION>_<KEY>_FILE.
    let secrets = resolve_secrets(&table, &env, &mut problems);
    find_unknown_keys(&table, &defaults, "", &mut problems);
    let mut config = typed_sections(&table, &mut problems);
    config.secrets = secrets;
    // A key whose value could not be read keeps its default, which the semantic rules must not
    // then report as a second, misleading problem of the same key.
    let unreadable: Vec<String> = problems.iter().map(|p| p.path.clone()).collect();
    problems.extend(
        config
            .validate()
            .into_iter()
            .filter(|p| !unreadable.contains(&p.path)),
    );
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

fn line_of(text: &str, byte: usize) -> usize {
    text[..byte.min(text.len())].matches('\n').count() + 1
}

fn resolve_secrets(
    table: &Table,
    env: &[(String, String)],
    problems: &mut Vec<Problem>,
) -> Secrets {
    let mut one = |slot: &SecretSlot| -> Option<Secret> {
        if let Some((_, v)) = env.iter().find(|(k, _)| *k == slot.env_var()) {
            return Some(Secret::new(v.trim()));
        }
        let file_key = format!("{}_file", slot.key);
        let file = table
            .get(slot.section)
            .and_then(|s| s.get(&file_key))
            .and_then(Value::as_str);
        match file {
            Some(f) if !f.is_empty() && slot.owner_only && shared_mode(f).is_some() => {
                let mode = shared_mode(f).unwrap_or_default();
                problems.push(Problem::new(
                    format!("{}.{file_key}", slot.section),
                    format!(
                        "secret file {f} has mode {mode:04o}: group or others may use it; \
                         chmod 600 it (it is not read)"
                    ),
                ));
                None
            }
            Some(f) if !f.is_empty() => match std::fs::read_to_string(f) {
                Ok(v) if !v.trim().is_empty() => Some(Secret::new(v.trim())),
                Ok(_) => {
                    problems.push(Problem::new(
                        format!("{}.{file_key}", slot.section),
                        format!("secret file {f} is empty"),
                    ));
                    None
                }
                Err(e) => {
                    problems.push(Problem::new(
                        format!("{}.{file_key}", slot.section),
                        format!("cannot read secret file {f}: {e}"),
                    ));
                    None
                }
            },
            _ => None,
        }
    };
    Secrets {
        api_admin_token: one(&SECRET_SLOTS[0]),
        llm_api_key: one(&SECRET_SLOTS[1]),
        chain_private_key: one(&SECRET_SLOTS[2]),
    }
}

/// The permission bits of file `f` when they give group or others any access (`None`: the
/// owner's only, or unreadable metadata, which the read then reports).
fn shared_mode(f: &str) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(f).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

fn apply_env_overrides(
    table: &mut Table,
    defaults: &Table,
    env: &[(String, String)],
    problems: &mut Vec<Problem>,
) {
    for (alias, full) in ALIASES {
        let value = |n: &str| env.iter().find(|(k, _)| k == n).map(|(_, v)| v);
        if let (Some(a), Some(f)) = (value(alias), value(full))
            && a != f
        {
            problems.push(Problem::new(
                *alias,
                format!("sets the same key as {full}, to another value"),
            ));
        }
    }
    for (name, raw) in env {
        if NON_KEY_VARIABLES.contains(&name.as_str())
            || SECRET_SLOTS.iter().any(|s| s.env_var() == *name)
        {
            continue;
        }
        let key_name = ALIASES
            .iter()
            .find(|(alias, _)| alias == name)
            .map_or(name.as_str(), |(_, full)| full);
        let rest = key_name["ATHENA_".len()..].to_ascii_lowercase();
        let Some(path) = resolve_key(defaults, &rest) else {
            let retired = RETIRED_KEYS
                .iter()
                .find(|(key, _)| key.replace('.', "_") == rest);
            let what = retired.map_or_else(
                || "names no configuration key".to_string(),
                |(key, instead)| format!("{key} {instead}"),
            );
            problems.push(Problem::new(name, what));
            continue;
        };
        let default = lookup(defaults, &path)
            .or_else(|| lookup(defaults, &path[..path.len() - 1]))
            .expect("resolved against defaults");
        let value = parse_override(raw, default);
        if let Err(reason) = set(table, &path, value) {
            problems.push(Problem::new(name, reason));
        }
    }
}

/// Finds the key path that `flat` (`memory_retention_observation`) spells, walking the defaults.
fn resolve_key(table: &Table, flat: &str) -> Option<Vec<String>> {
    resolve_key_under(table, flat, "")
}

fn resolve_key_under(table: &Table, flat: &str, prefix: &str) -> Option<Vec<String>> {
    if OPEN_TABLES.contains(&prefix) && !flat.is_empty() {
        return Some(vec![flat.to_string()]);
    }
    for (key, value) in table {
        if flat == key {
            return Some(vec![key.clone()]);
        }
        let rest = flat
            .strip_prefix(key.as_str())
            .and_then(|r| r.strip_prefix('_'));
        if let (Some(rest), Value::Table(inner)) = (rest, value) {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            if let Some(mut found) = resolve_key_under(inner, rest, &path) {
                found.insert(0, key.clone());
                return Some(found);
            }
        }
    }
    None
}

fn lookup<'a>(table: &'a Table, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let v = table.get(first)?;
    if rest.is_empty() {
        Some(v)
    } else {
        v.as_table().and_then(|t| lookup(t, rest))
    }
}

fn parse_override(raw: &str, default: &Value) -> Value {
    if default.is_table() {
        // A key of an open table: same type as its siblings.
        if let Some(sibling) = default.as_table().and_then(|t| t.values().next()) {
            return parse_override(raw, sibling);
        }
    }
    let parsed = format!("v = {raw}")
        .parse::<Table>()
        .ok()
        .and_then(|mut t| t.remove("v"));
    match parsed {
        Some(v) if v.same_type(default) => v,
        Some(v @ Value::Integer(_)) if default.is_float() => {
            Value::Float(v.as_integer().unwrap_or(0) as f64)
        }
        Some(v) if !default.is_str() => v,
        _ => Value::String(raw.to_string()),
    }
}

fn set(table: &mut Table, path: &[String], value: Value) -> Result<(), String> {
    let (first, rest) = path.split_first().expect("non-empty path");
    if rest.is_empty() {
        table.insert(first.clone(), value);
        return Ok(());
    }
    let entry = table
        .entry(first.clone())
        .or_insert_with(|| Value::Table(Table::new()));
    match entry {
        Value::Table(inner) => set(inner, rest, value),
        _ => Err(format!("{first} is not a table in the config file")),
    }
}

fn find_unknown_keys(table: &Table, defaults: &Table, prefix: &str, problems: &mut Vec<Problem>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if let Some(slot) = SECRET_SLOTS
            .iter()
            .find(|s| prefix == s.section && key == s.key)
        {
            problems.push(Problem::new(
                path,
                format!(
                    "secrets are not written in the config file; set {} or {}_file",
                    slot.env_var(),
                    slot.key
                ),
            ));
            continue;
        }
        match defaults.get(key) {
            None => {
                let retired = RETIRED_KEYS.iter().find(|(name, _)| *name == path);
                let what = retired.map_or("unknown key", |(_, instead)| *instead);
                problems.push(Problem::new(path, what));
            }
            Some(Value::Table(d)) if !OPEN_TABLES.contains(&path.as_str()) => {
                if let Value::Table(t) = value {
                    find_unknown_keys(t, d, &path, problems);
                }
            }
            _ => {}
        }
    }
}

fn typed_sections(table: &Table, problems: &mut Vec<Problem>) -> Config {
    let defaults = Table::try_from(Config::default()).expect("defaults serialize");
    fn section<T: DeserializeOwned + Default>(
        table: &Table,
        defaults: &Table,
        name: &str,
        problems: &mut Vec<Problem>,
    ) -> T {
        let Some(value) = table.get(name) else {
            return T::default();
        };
        if let Ok(v) = value.clone().try_into::<T>() {
            return v;
        }
        // Find every offending key: each one alone on top of the defaults.
        let (Some(given), Some(Value::Table(base))) = (value.as_table(), defaults.get(name)) else {
            problems.push(Problem::new(name, "must be a table"));
            return T::default();
        };
        // Keep the good keys so that semantic validation still sees them.
        let mut good = base.clone();
        for (key, v) in given {
            if !base.contains_key(key) {
                continue; // already reported as an unknown key
            }
            let mut probe = base.clone();
            probe.insert(key.clone(), v.clone());
            match Value::Table(probe).try_into::<T>() {
                Ok(_) => {
                    good.insert(key.clone(), v.clone());
                }
                Err(e) => problems.push(Problem::new(format!("{name}.{key}"), clean(e.message()))),
            }
        }
        Value::Table(good).try_into::<T>().unwrap_or_default()
    }
    let d = &defaults;
    Config {
        agent: section(table, d, "agent", problems),
        market: section(table, d, "market", problems),
        strategy: section(table, d, "strategy", problems),
        executor: section(table, d, "executor", problems),
        memory: section(table, d, "memory", problems),
        risk: section(table, d, "risk", problems),
        gas: section(table, d, "gas", problems),
        recovery: section(table, d, "recovery", problems),
        llm: section(table, d, "llm", problems),
        sync: section(table, d, "sync", problems),
        monitor: section(table, d, "monitor", problems),
        api: section(table, d, "api", problems),
        chain: section(table, d, "chain", problems),
        secrets: Secrets::default(),
    }
}

fn clean(message: &str) -> String {
    message.trim().replace('\n', " ")
}
