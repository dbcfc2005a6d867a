//! The JSON-RPC client: alloy's [`RpcClient`] over a reqwest client with the configured
//! request timeout, calls gathered into one batch (one HTTP round trip), and a count of round
//! trips (what the benchmark and `/metrics` report).
//!
//! Calls run on a small runtime of their own, so the synchronous tick (on a blocking thread,
//! or in a backtest with no runtime at all) can wait for them.

use alloy::rpc::client::{BatchRequest, RpcClient};
use alloy::rpc::json_rpc::{RpcRecv, RpcSend};
use alloy::transports::TransportError;
use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// An RPC call that failed.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The request failed: no answer within the timeout, a refused connection, an error reply.
    #[error("RPC {method}: {why}")]
    Call {
        /// The JSON-RPC method (the first of a batch when the whole batch failed).
        method: String,
        /// The transport's error and its causes, each said once.
        why: String,
        /// The transport's error (its causes repeat its text, so it is not chained).
        transport: TransportError,
    },
    /// The answer cannot be used (bad ABI data, a missing block).
    #[error("RPC {method}: {why}")]
    Malformed {
        /// The JSON-RPC method.
        method: String,
        /// What is wrong with it.
        why: String,
    },
    /// `chain.rpc_url` is not a URL.
    #[error("chain.rpc_url {url:?} is not a URL: {why}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        why: String,
    },
}

impl RpcError {
    /// A failed call of `method`.
    pub fn call(method: impl Into<String>, transport: TransportError) -> Self {
        let mut why = transport.to_string();
        let mut cause = std::error::Error::source(&transport);
        while let Some(c) = cause {
            let text = c.to_string();
            if !why.contains(&text) {
                why = format!("{why}: {text}");
            }
            cause = c.source();
        }
        Self::Call {
            method: method.into(),
            why,
            transport,
        }
    }

    /// Whether the node answered with an error (a revert, an unknown method), rather than not
    /// answering at all.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::Call {
                transport: TransportError::ErrorResp(_),
                ..
            }
        )
    }
}

/// The runtime the tick's network calls (JSON-RPC, the LLM advisor) run on, from the tick's
/// blocking thread (one worker; never dropped, so dropping a source inside an async context
/// is safe).
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("athena-rpc")
            .enable_all()
            .build()
            .expect("the RPC runtime starts")
    })
}

/// A JSON-RPC endpoint.
#[derive(Clone)]
pub struct Rpc {
    client: RpcClient,
    round_trips: Arc<AtomicU64>,
}

impl Rpc {
    /// A client of `url` whose requests give up after `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, RpcError> {
        let bad = |why: String| RpcError::Url {
            url: url.to_string(),
            why,
        };
        let parsed: reqwest::Url = url.parse().map_err(|e| bad(format!("{e}")))?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| bad(format!("{e}")))?;
        Ok(Self {
            client: RpcClient::new_http_with_client(http, parsed),
            round_trips: Arc::new(AtomicU64::new(0)),
        })
    }

    /// HTTP round trips made so far.
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// Runs `calls` as one batch (one round trip) and waits for every answer.
    pub fn batch<T>(&self, calls: impl FnOnce(&mut Batch<'_>) -> T) -> Result<T::Output, RpcError>
    where
        T: Answers,
    {
        let mut batch = Batch {
            inner: self.client.new_batch(),
            first: None,
            error: None,
        };
        let pending = calls(&mut batch);
        if let Some(e) = batch.error {
            return Err(e);
        }
        let first = batch.first.clone().unwrap_or_default();
        if first.is_empty() {
            return pending.wait();
        }
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        runtime().block_on(async move {
            batch
                .inner
                .send()
                .await
                .map_err(|e| RpcError::call(first, e))?;
            pending.wait_async().await
        })
    }
}

/// Calls being gathered into one batch.
pub struct Batch<'a> {
    inner: BatchRequest<'a>,
    first: Option<String>,
    error: Option<RpcError>,
}

impl Batch<'_> {
    /// Adds a call; its answer is read with [`Answers`] after the batch is sent.
    pub fn call<P: RpcSend, R: RpcRecv>(&mut self, method: &'static str, params: P) -> Pending<R> {
        self.first.get_or_insert_with(|| method.to_string());
        match self.inner.add_call::<P, R>(Cow::Borrowed(method), &params) {
            Ok(waiter) => Pending {
                method,
                waiter: Some(waiter),
            },
            Err(e) => {
                self.error.get_or_insert(RpcError::call(method, e));
                Pending {
                    method,
                    waiter: None,
                }
            }
        }
    }
}

/// The answer of one call of a batch.
pub struct Pending<R> {
    method: &'static str,
    waiter: Option<alloy::rpc::client::Waiter<R>>,
}

/// What a batch's answers become once it is sent: one call, a tuple, a `Vec` or an `Option`
/// of them.
pub trait Answers: Send {
    /// The answers.
    type Output: Send;
    /// Waits for the answers.
    fn wait_async(self) -> impl Future<Output = Result<Self::Output, RpcError>> + Send;
    /// The answers of an empty batch (nothing was sent).
    fn wait(self) -> Result<Self::Output, RpcError>
    where
        Self: Sized,
    {
        runtime().block_on(self.wait_async())
    }
}

impl<R: RpcRecv> Answers for Pending<R> {
    type Output = R;
    async fn wait_async(self) -> Result<R, RpcError> {
        let Some(waiter) = self.waiter else {
            return Err(RpcError::Malformed {
                method: self.method.into(),
                why: "the call was not sent".into(),
            });
        };
        waiter.await.map_err(|e| RpcError::call(self.method, e))
    }
}

impl<A: Answers> Answers for Vec<A> {
    type Output = Vec<A::Output>;
    async fn wait_async(self) -> Result<Self::Output, RpcError> {
        let mut out = Vec::with_capacity(self.len());
        for a in self {
            out.push(a.wait_async().await?);
        }
        Ok(out)
    }
}

impl<A: Answers> Answers for Option<A> {
    type Output = Option<A::Output>;
    async fn wait_async(self) -> Result<Self::Output, RpcError> {
        match self {
            Some(a) => Ok(Some(a.wait_async().await?)),
            None => Ok(None),
        }
    }
}

macro_rules! tuple_answers {
    ($($name:ident),+) => {
        impl<$($name: Answers),+> Answers for ($($name,)+) {
            type Output = ($($name::Output,)+);
            #[allow(non_snake_case)]
            async fn wait_async(self) -> Result<Self::Output, RpcError> {
                let ($($name,)+) = self;
                Ok(($($name.wait_async().await?,)+))
            }
        }
    };
}
tuple_answers!(A, B);
tuple_answers!(A, B, C);
tuple_answers!(A, B, C, D);
tuple_answers!(A, B, C, D, E);
