//! The admin bearer token: where it comes from (`ATHENA_API_ADMIN_TOKEN`, else
//! `api.admin_token_file`), how it is checked (constant time), and the slowdown of repeated
//! failures. The token is never logged, printed or put in an error message.

use super::error::ApiError;
use axum::http::{HeaderMap, StatusCode, header};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// The environment variable holding the token.
pub const TOKEN_ENV: &str = "ATHENA_API_ADMIN_TOKEN";

/// The shortest token accepted: shorter ones are guessable.
pub const MIN_TOKEN_LEN: usize = 16;

/// The first failure's delay; each further one doubles it, up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest delay of a failed attempt.
const MAX_DELAY: Duration = Duration::from_secs(5);
/// Failures older than this are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);

/// The admin token (its `Debug` does not show it).
#[derive(Clone)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

/// Why the token cannot be used.
#[derive(Debug, thiserror::Error)]
#[error(
    "the admin token ({TOKEN_ENV} or api.admin_token_file) is {len} characters; at least {MIN_TOKEN_LEN} are needed"
)]
pub struct TooShort {
    /// Its length.
    pub len: usize,
}

impl Token {
    /// The token the configuration resolved (from `ATHENA_API_ADMIN_TOKEN` or
    /// `api.admin_token_file`); `None` when neither is set.
    pub fn from_config(config: &athena_config::Config) -> Result<Option<Self>, TooShort> {
        let Some(secret) = &config.secrets.api_admin_token else {
            return Ok(None);
        };
        let token = secret.expose().trim();
        if token.len() < MIN_TOKEN_LEN {
            return Err(TooShort { len: token.len() });
        }
        Ok(Some(Self(token.to_string())))
    }

    /// Whether `presented` is this token, in time that does not depend on where they differ.
    fn matches(&self, presented: &str) -> bool {
        self.0.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

/// Checks requests against the token and slows down repeated failures.
#[derive(Debug)]
pub struct Guard {
    token: Option<Token>,
    /// Failures in a row and the last one's time.
    failures: std::sync::Mutex<(u32, Option<Instant>)>,
}

impl Guard {
    /// A guard for `token` (`None`: mutating endpoints are refused).
    pub fn new(token: Option<Token>) -> Self {
        Self {
            token,
            failures: std::sync::Mutex::new((0, None)),
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, (u32, Option<Instant>)> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a token is configured.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Admits a request carrying the admin token; refuses one without it: 403 when no token
    /// is configured, 401 (after a growing delay) for a missing or wrong one.
    pub async fn admit(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(token) = &self.token else {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "no admin token is configured: set {TOKEN_ENV} or api.admin_token_file (at least {MIN_TOKEN_LEN} characters) and restart the agent"
                ),
            ));
        };
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if presented.is_some_and(|p| token.matches(p.trim())) {
            // The right token never waits, whatever else is being tried meanwhile.
            *self.failures() = (0, None);
            return Ok(());
        }
        let (count, delay) = {
            let mut failures = self.failures();
            if failures.1.is_some_and(|at| at.elapsed() > FORGET_AFTER) {
                *failures = (0, None);
            }
            failures.0 = failures.0.saturating_add(1);
            failures.1 = Some(Instant::now());
            (failures.0, delay_after(failures.0))
        };
        tracing::warn!(failures = count, "failed admin authentication");
        // Each failed request waits on its own: a flood of wrong tokens slows itself, not
        // the operator's emergency stop.
        tokio::time::sleep(delay).await;
        let message = if presented.is_none() {
            "this endpoint needs the admin token: Authorization: Bearer <token>"
        } else {
            "the admin token is wrong"
        };
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            message,
        ))
    }
}

/// The delay after `n` failures in a row: 100 ms, doubling, at most 5 s.
fn delay_after(n: u32) -> Duration {
    let doublings = n.saturating_sub(1).min(16);
    (FIRST_DELAY * 2u32.pow(doublings)).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_grows_and_is_capped() {
        assert_eq!(delay_after(1), Duration::from_millis(100));
        assert_eq!(delay_after(2), Duration::from_millis(200));
        assert_eq!(delay_after(6), Duration::from_millis(3200));
        assert_eq!(delay_after(7), MAX_DELAY);
        assert_eq!(delay_after(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn a_token_never_shows_in_debug_output() {
        let t = Token("s3cret-s3cret-s3cret".into());
        assert!(!format!("{t:?}").contains("s3cret"));
        assert!(t.matches("s3cret-s3cret-s3cret"));
        assert!(!t.matches("s3cret-s3cret-s3cre"));
        assert!(!t.matches(""));
    }
}
