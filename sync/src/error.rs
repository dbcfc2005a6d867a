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

/// `e` and its causes as one readable line: each level's message joined with ": ", a level
/// whose text the line already holds left out (many errors repeat their cause in their own
/// message), whitespace squashed, at most 240 characters.
pub fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let squash = |s: String| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut line = squash(e.to_string());
    let mut level = e.source();
    while let Some(cause) = level {
        let text = squash(cause.to_string());
        if !text.is_empty() && !line.contains(&text) {
            line = format!("{line}: {text}");
        }
        level = cause.source();
    }
    const MAX: usize = 240;
    match line.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[derive(Debug, thiserror::Error)]
    #[error("reading {0}")]
    struct Context(&'static str, #[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("store: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[test]
    fn every_level_once_on_one_line() {
        let io = || std::io::Error::other("No space left\non device");
        assert_eq!(
            one_line(&Context("a.ckpt", io())),
            "reading a.ckpt: No space left on device"
        );
        assert_eq!(one_line(&Repeats(io())), "store: No space left on device");
        let long = std::io::Error::other("x".repeat(1000));
        assert_eq!(one_line(&long).chars().count(), 241);
    }
}
