//! The stop signals of `athena run`: SIGINT (Ctrl-C), SIGTERM (a supervisor) and SIGHUP (the
//! terminal went away) all ask for the same ordered, clean stop.
//!
//! They are installed before anything else runs, the recovery ladder included, so a signal in
//! the first milliseconds of a start is a clean stop, never the default action (an exit the
//! next start would report as a crash).

use tokio::sync::watch;

/// Installs the handlers (inside the runtime) and returns a receiver that turns `true` at the
/// first of them; the signal's name is printed.
pub fn install() -> std::io::Result<watch::Receiver<bool>> {
    let (tx, rx) = watch::channel(false);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut hup = signal(SignalKind::hangup())?;
        tokio::spawn(async move {
            let name = tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
                _ = hup.recv() => "SIGHUP",
            };
            println!("athena: {name} received");
            tx.send(true).ok();
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            println!("athena: Ctrl-C received");
            tx.send(true).ok();
        }
    });
    Ok(rx)
}
