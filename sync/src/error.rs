//! The sync crate's one error enum, named by what the caller does.

/// What went wrong in the sync layer (sink failures are per-write values, not errors).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The local store failed: retry the pass later, or halt if it persists.
    #[error("store: {0}")]
    Store(#[from] athena_storage::StoreError),
    /// A blocking task panicked or was cancelled: a bug; restart the worker.
    #[error("worker task failed: {0}")]
    Task(String),
    /// A sink could not be built from the configuration: fix the configuration.
    #[error("sink configuration: {0}")]
    Config(String),
    /// The cloud service could not be reached to build a sink: retry later (the running agent
    /// does, in the background).
    #[error("{0}")]
    Unreachable(String),
}

/// `e` and its causes as one readable line: the outermost message and the innermost cause
/// (`transport error: … Connection refused (os error 111)` rather than a nested dump).
pub fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let squash = |s: String| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let outer = squash(e.to_string());
    let mut root = e;
    while let Some(next) = root.source() {
        root = next;
    }
    let inner = squash(root.to_string());
    let line = if std::ptr::eq(root, e) || outer.contains(&inner) {
        outer
    } else {
        format!("{outer}: {inner}")
    };
    const MAX: usize = 240;
    match line.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}
