//! The signals that ask a process to stop: SIGINT (Ctrl-C) and SIGTERM (systemd, Kubernetes,
//! `docker stop`). Handled explicitly, so that as PID 1 in a container, where the kernel
//! ignores signals without a handler, the process still stops.

/// Resolves with the signal's name once the process is asked to stop.
pub async fn shutdown() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut interrupt), Ok(mut terminate)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
        else {
            // Without handlers the default actions still stop the process.
            return std::future::pending().await;
        };
        tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}
