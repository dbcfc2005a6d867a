//! The OpenAI-compatible chat-completions client (OpenAI, Gemini's compatible endpoint, vLLM,
//! llama.cpp's server, Ollama): one request with a JSON-schema `response_format`, retried
//! with backoff on a 429, a 5xx or a connection error, never past the caller's deadline; the
//! reply's text and token usage come back for accounting.
//!
//! The tick calls it from its blocking thread; the request runs on the shared network
//! runtime. The API key is sent as a bearer token and never logged.

use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// First retry delay; doubled after each retry.
const BACKOFF_START: Duration = Duration::from_millis(200);

/// One chat-completions request.
#[derive(Debug, Clone)]
pub struct Call {
    /// System prompt.
    pub system: String,
    /// User prompt.
    pub user: String,
    /// JSON schema of the reply.
    pub schema: Value,
    /// Reply tokens at most.
    pub max_tokens: u32,
}

/// A reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The reply's content.
    pub text: String,
    /// Prompt tokens the endpoint counted.
    pub prompt_tokens: u64,
    /// Reply tokens.
    pub reply_tokens: u64,
    /// Attempts it took (1 without a retry).
    pub attempts: u32,
}

/// Why a call gave no reply.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    /// The deadline passed (feeds the llm_timeout breaker).
    #[error("no reply within the advisor's timeout")]
    Timeout,
    /// The endpoint answered with an error status (after the retries a 429 or 5xx gets).
    #[error("HTTP {status}: {body}")]
    Status {
        /// Status code.
        status: u16,
        /// The start of its body.
        body: String,
    },
    /// The endpoint could not be reached.
    #[error("cannot reach the endpoint: {0}")]
    Connect(String),
    /// The response was not a chat completion.
    #[error("not a chat completion: {0}")]
    NotCompletion(String),
}

impl CallError {
    fn retriable(&self) -> bool {
        match self {
            Self::Status { status, .. } => *status == 429 || *status >= 500,
            Self::Connect(_) => true,
            Self::Timeout | Self::NotCompletion(_) => false,
        }
    }
}

/// A chat-completions endpoint.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    url: String,
    model: String,
    key: Option<String>,
    max_retries: u32,
}

impl Client {
    /// A client of `endpoint` (…/v1) for `model`.
    pub fn new(endpoint: &str, model: &str, key: Option<String>, max_retries: u32) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: format!("{}/chat/completions", endpoint.trim_end_matches('/')),
            model: model.to_string(),
            key,
            max_retries,
        }
    }

    /// The model's reply to `call`, retried within `deadline`.
    pub fn complete(&self, call: &Call, deadline: Instant) -> Result<Answer, CallError> {
        let body = json!({
            "model": self.model,
            "temperature": 0,
            "max_tokens": call.max_tokens,
            "messages": [
                {"role": "system", "content": call.system},
                {"role": "user", "content": call.user},
            ],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "advice", "strict": true, "schema": call.schema},
            },
        });
        let mut backoff = BACKOFF_START;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(CallError::Timeout);
            }
            match crate::chain::rpc::runtime().block_on(self.once(&body, left)) {
                Ok(mut answer) => {
                    answer.attempts = attempts;
                    return Ok(answer);
                }
                Err(e) if e.retriable() && attempts <= self.max_retries => {
                    tracing::warn!(error = %e, attempt = attempts, "llm call failed; retrying");
                    if Instant::now() + backoff >= deadline {
                        return Err(CallError::Timeout);
                    }
                    std::thread::sleep(backoff);
                    backoff *= 2;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn once(&self, body: &Value, timeout: Duration) -> Result<Answer, CallError> {
        let mut request = self.http.post(&self.url).json(body).timeout(timeout);
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let text = response.text().await.map_err(transport)?;
        if !status.is_success() {
            return Err(CallError::Status {
                status: status.as_u16(),
                body: text.chars().take(200).collect(),
            });
        }
        completion(&text)
    }
}

fn transport(e: reqwest::Error) -> CallError {
    if e.is_timeout() {
        CallError::Timeout
    } else if e.is_connect() || e.is_request() {
        CallError::Connect(e.to_string())
    } else {
        CallError::NotCompletion(e.to_string())
    }
}

/// The content and usage of a chat-completions response body.
fn completion(body: &str) -> Result<Answer, CallError> {
    let v: Value =
        serde_json::from_str(body).map_err(|e| CallError::NotCompletion(e.to_string()))?;
    let text = v["choices"][0]["message"]["content"]
        .as_str()
        .ok_or_else(|| CallError::NotCompletion("no choices[0].message.content".into()))?;
    let usage = |k: &str| v["usage"][k].as_u64().unwrap_or(0);
    Ok(Answer {
        text: text.to_string(),
        prompt_tokens: usage("prompt_tokens"),
        reply_tokens: usage("completion_tokens"),
        attempts: 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_completion_gives_its_content_and_usage() {
        let a = completion(
            r#"{"choices":[{"message":{"role":"assistant","content":"{}"}}],"usage":{"prompt_tokens":12,"completion_tokens":3}}"#,
        )
        .unwrap();
        assert_eq!(
            (a.text.as_str(), a.prompt_tokens, a.reply_tokens),
            ("{}", 12, 3)
        );
        assert!(matches!(completion("{}"), Err(CallError::NotCompletion(_))));
        assert!(matches!(
            completion("<html>"),
            Err(CallError::NotCompletion(_))
        ));
    }

    #[test]
    fn only_429_5xx_and_connection_errors_are_retried() {
        let status = |s| CallError::Status {
            status: s,
            body: String::new(),
        };
        assert!(status(429).retriable() && status(500).retriable() && status(503).retriable());
        assert!(!status(400).retriable() && !status(401).retriable());
        assert!(CallError::Connect(String::new()).retriable());
        assert!(!CallError::Timeout.retriable());
    }
}
