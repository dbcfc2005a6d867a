//! The running agent's HTTP API as the CLI's second source: when `DATA_DIR/api.json` names a
//! live agent, the commands that read or change its state ask it instead of opening the store
//! it holds, and print the answer with the same code as the local path.
//!
//! Invariants: an agent that does not answer (connection refused or no connection within
//! [`CONNECT_TIMEOUT`]) is treated as absent, so the command falls back to the store; an API
//! error becomes the CLI's exit (400 → 2, anything else → 1) with the API's message; the token
//! is sent as a header and never printed.

use super::Exit;
use crate::api::runtime::Runtime;
use athena_config::Config;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// How long the CLI waits for the agent to accept a connection before using the store.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest one request may take: the API's own limit (a control waits for the tick in
/// progress and its commit) and a margin.
pub const REQUEST_TIMEOUT: Duration =
    Duration::from_secs(crate::api::REQUEST_TIMEOUT.as_secs() + 5);

/// Why a request to the agent did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// Nothing answers at the address: use the store instead.
    #[error("the agent (pid {pid}) does not answer on {address}")]
    Unreachable {
        /// The pid of the runtime file.
        pid: u32,
        /// The address of the runtime file.
        address: String,
    },
    /// The agent answered with an error.
    #[error("{message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The API's error code.
        code: String,
        /// The API's message.
        message: String,
    },
    /// The request failed after connecting (timeout, reset).
    #[error("talking to the agent on {address}: {source}")]
    Transport {
        /// The agent's address.
        address: String,
        /// Why.
        source: reqwest::Error,
    },
    /// The answer is not what this CLI expects (another version of the agent?).
    #[error("the agent's answer to {path} does not parse: {source}")]
    Decode {
        /// The endpoint.
        path: String,
        /// Why.
        source: serde_json::Error,
    },
}

/// A running agent found by its runtime file.
pub struct Agent {
    runtime: Runtime,
    /// The admin token of this environment (ATHENA_API_ADMIN_TOKEN or api.admin_token_file,
    /// resolved by the configuration).
    token: Option<athena_config::Secret>,
    client: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

/// The agent running on `config`'s data directory, if its runtime file names a live process.
pub fn find(config: &Config) -> anyhow::Result<Option<Agent>> {
    let Some(runtime) = Runtime::find(&config.agent.data_dir) else {
        return Ok(None);
    };
    let client = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .no_proxy()
        .build()?;
    Ok(Some(Agent {
        runtime,
        token: config.secrets.api_admin_token.clone(),
        client,
        rt: super::runtime()?,
    }))
}

/// Runs `request` against the running agent. `Ok(None)`: no agent, or it does not answer (the
/// caller uses the store); an error answer becomes the CLI's exit.
pub fn call<T>(
    config: &Config,
    request: impl FnOnce(&Agent) -> Result<T, RemoteError>,
) -> anyhow::Result<Option<T>> {
    let Some(agent) = find(config)? else {
        return Ok(None);
    };
    match request(&agent) {
        Ok(v) => Ok(Some(v)),
        Err(RemoteError::Unreachable { .. }) => Ok(None),
        Err(e) => Err(agent.exit(e)),
    }
}

/// The most entries the API returns for one list (`/memories/recent`, `/journal`).
pub const MAX_LIST: usize = 1_000;

/// A `--limit` as the API takes it: at most [`MAX_LIST`], with a note on stderr when that
/// cuts it (the API has no paging).
pub fn list_limit(limit: usize) -> String {
    if limit > MAX_LIST {
        eprintln!(
            "note: the running agent's API returns at most {MAX_LIST} entries; showing the newest {MAX_LIST}"
        );
    }
    limit.min(MAX_LIST).to_string()
}

/// Refuses a command that needs the store to itself while an agent runs on it.
pub fn require_stopped(config: &Config, what: &str) -> anyhow::Result<()> {
    match Runtime::find(&config.agent.data_dir) {
        None => Ok(()),
        Some(r) => Err(Exit {
            code: 1,
            message: format!(
                "error: {what} needs the agent stopped, and it is running on {} (pid {}, API on {}): stop it first (SIGINT or SIGTERM)",
                config.agent.data_dir.display(),
                r.pid,
                r.address
            ),
        }
        .into()),
    }
}

impl Agent {
    /// `GET path?query`, decoded as `T`.
    pub fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, RemoteError> {
        let mut url = self.url(path);
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        self.send(self.client.get(url), path)
    }

    /// `POST path` with `body` and the admin token (when one is set here), decoded as `T`.
    pub fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, RemoteError> {
        let mut request = self.client.post(self.url(path));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose().trim());
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.send(request, path)
    }

    fn url(&self, path: &str) -> reqwest::Url {
        // The address comes from the runtime file the agent wrote (`ip:port`).
        reqwest::Url::parse(&format!("http://{}{path}", self.runtime.address))
            .unwrap_or_else(|_| reqwest::Url::parse("http://127.0.0.1:9/").expect("static URL"))
    }

    fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        path: &str,
    ) -> Result<T, RemoteError> {
        self.rt.block_on(async {
            let response = request.send().await.map_err(|e| self.transport(e))?;
            let status = response.status();
            let bytes = response.bytes().await.map_err(|e| self.transport(e))?;
            if status.is_success() {
                return serde_json::from_slice(&bytes).map_err(|source| RemoteError::Decode {
                    path: path.to_string(),
                    source,
                });
            }
            Err(api_error(status.as_u16(), &bytes))
        })
    }

    fn transport(&self, source: reqwest::Error) -> RemoteError {
        if source.is_connect() {
            return RemoteError::Unreachable {
                pid: self.runtime.pid,
                address: self.runtime.address.clone(),
            };
        }
        RemoteError::Transport {
            address: self.runtime.address.clone(),
            source,
        }
    }

    /// The CLI's exit for `e`.
    fn exit(&self, e: RemoteError) -> anyhow::Error {
        let token_set = self.token.is_some();
        exit_for(e, token_set).into()
    }
}

/// The CLI's exit for `e`: 400 is the operator's input (exit 2), the rest exit 1; a 401 says
/// how to set the token (`token_set`: whether one is set in this environment).
fn exit_for(e: RemoteError, token_set: bool) -> Exit {
    let hint = if token_set {
        "the token set here (ATHENA_API_ADMIN_TOKEN or api.admin_token_file) is not the agent's"
    } else {
        "no admin token is set here: set ATHENA_API_ADMIN_TOKEN (or api.admin_token_file) to the agent's token"
    };
    match &e {
        RemoteError::Api { status: 400, .. } => Exit::usage(e),
        RemoteError::Api { status: 401, .. } => Exit {
            code: 1,
            message: format!("error: {e}; {hint}"),
        },
        _ => Exit {
            code: 1,
            message: format!("error: {e}"),
        },
    }
}

/// The API's error body, or the status and the raw text when it is not one.
fn api_error(status: u16, bytes: &[u8]) -> RemoteError {
    match serde_json::from_slice::<crate::api::error::ErrorBody>(bytes) {
        Ok(body) => RemoteError::Api {
            status,
            code: body.error.code,
            message: body.error.message,
        },
        Err(_) => RemoteError::Api {
            status,
            code: String::new(),
            message: format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(bytes)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_become_the_cli_exits_with_the_api_message() {
        let body = br#"{"error":{"code":"bad_request","message":"reason is empty"}}"#;
        let e = exit_for(api_error(400, body), true);
        assert_eq!((e.code, e.message.as_str()), (2, "error: reason is empty"));
        let body = br#"{"error":{"code":"unauthorized","message":"the admin token is wrong"}}"#;
        let e = exit_for(api_error(401, body), false);
        assert_eq!(e.code, 1);
        assert!(e.message.starts_with("error: the admin token is wrong; "));
        assert!(e.message.contains("set ATHENA_API_ADMIN_TOKEN"));
        let e = exit_for(api_error(503, b"<html>gateway</html>"), true);
        assert_eq!(
            (e.code, e.message.as_str()),
            (1, "error: HTTP 503: <html>gateway</html>")
        );
    }

    #[test]
    fn a_stale_runtime_file_finds_no_agent() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.agent.data_dir = dir.path().to_path_buf();
        assert!(find(&config).unwrap().is_none());
        // This process's own pid is never "the agent".
        Runtime {
            pid: std::process::id(),
            address: "127.0.0.1:9".into(),
        }
        .write(dir.path())
        .unwrap();
        assert!(find(&config).unwrap().is_none());
        assert!(require_stopped(&config, "x").is_ok());
    }

    #[test]
    fn list_limits_are_capped_at_the_apis() {
        assert_eq!(list_limit(50), "50");
        assert_eq!(list_limit(5_000), "1000");
    }
}
