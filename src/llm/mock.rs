//! A fault-injecting OpenAI-compatible endpoint in the process, beside the real model (tests
//! and benchmarks; never used by `athena run`): it answers chat completions with advice built
//! from the request's own schema, or with the fault it is set to: a timeout, a 429, a 500,
//! malformed JSON, an out-of-range number, a batch reply missing an item. It counts requests
//! and keeps the prompts it was sent.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the mock does with each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Approve everything (priority 7, size factor 1).
    None,
    /// Veto everything.
    Veto,
    /// Answer after `delay` (set it past the advisor's timeout).
    Slow,
    /// HTTP 429.
    TooMany,
    /// HTTP 500.
    ServerError,
    /// A content that is not JSON.
    Malformed,
    /// size_factor 7.5 (the schema says at most 1).
    OutOfRange,
    /// A batch reply that leaves out its last answer (single replies are fine).
    BatchMissingItem,
}

/// The endpoint.
#[derive(Clone)]
pub struct Mock {
    fault: Arc<Mutex<Fault>>,
    requests: Arc<AtomicU64>,
    batch_requests: Arc<AtomicU64>,
    prompts: Arc<Mutex<Vec<String>>>,
    delay: Duration,
    /// Its base URL (`http://127.0.0.1:PORT/v1`).
    pub url: String,
}

impl Mock {
    /// Starts a mock answering with `fault` on a loopback port, on a thread of its own.
    pub fn start(fault: Fault) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        listener.set_nonblocking(true).expect("non-blocking");
        let mock = Self {
            fault: Arc::new(Mutex::new(fault)),
            requests: Arc::new(AtomicU64::new(0)),
            batch_requests: Arc::new(AtomicU64::new(0)),
            prompts: Arc::new(Mutex::new(Vec::new())),
            delay: Duration::from_secs(3),
            url: format!("http://{}/v1", listener.local_addr().expect("an address")),
        };
        let app = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(complete))
            .with_state(mock.clone());
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime")
                .block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("the listener");
                    axum::serve(listener, app).await.expect("the mock serves");
                });
        });
        mock
    }

    /// Sets the fault for the next requests.
    pub fn set(&self, fault: Fault) {
        *self.fault.lock().expect("not poisoned") = fault;
    }

    /// Requests received.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Of them, batch requests (a reply schema with `answers`).
    pub fn batch_requests(&self) -> u64 {
        self.batch_requests.load(Ordering::Relaxed)
    }

    /// The user prompts received, oldest first.
    pub fn prompts(&self) -> Vec<String> {
        self.prompts.lock().expect("not poisoned").clone()
    }
}

fn advice(verdict: &str, size_factor: f64) -> Value {
    json!({"verdict": verdict, "size_factor": size_factor, "priority": 7, "reason": "mock"})
}

async fn complete(State(mock): State<Mock>, Json(body): Json<Value>) -> Response {
    mock.requests.fetch_add(1, Ordering::Relaxed);
    if let Some(user) = body["messages"][1]["content"].as_str() {
        mock.prompts
            .lock()
            .expect("not poisoned")
            .push(user.to_string());
    }
    let fault = *mock.fault.lock().expect("not poisoned");
    let schema = &body["response_format"]["json_schema"]["schema"];
    let batch = schema["properties"]["answers"]["minItems"].as_u64();
    if batch.is_some() {
        mock.batch_requests.fetch_add(1, Ordering::Relaxed);
    }
    let (verdict, size) = match fault {
        Fault::Veto => ("veto", 1.0),
        Fault::OutOfRange => ("approve", 7.5),
        _ => ("approve", 1.0),
    };
    let content = match (fault, batch) {
        (Fault::Slow, _) => {
            tokio::time::sleep(mock.delay).await;
            advice(verdict, size).to_string()
        }
        (Fault::TooMany, _) => {
            return (StatusCode::TOO_MANY_REQUESTS, "slow down").into_response();
        }
        (Fault::ServerError, _) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response();
        }
        (Fault::Malformed, _) => "[BATCHED]".to_string(),
        (_, Some(n)) => {
            let keep = if fault == Fault::BatchMissingItem {
                n - 1
            } else {
                n
            };
            let answers: Vec<Value> = (0..keep)
                .map(|id| {
                    let mut a = advice(verdict, size);
                    a["id"] = json!(id);
                    a
                })
                .collect();
            json!({ "answers": answers }).to_string()
        }
        (_, None) => advice(verdict, size).to_string(),
    };
    Json(json!({
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 200, "completion_tokens": 30},
    }))
    .into_response()
}
