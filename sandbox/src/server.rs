//! The sandbox's own accept loop.
//!
//! `axum::serve` always answers a request; an injected `DropConnection` fault must instead close
//! the socket with no response at all, the way a crashed upstream or a middlebox does. Serving
//! the router through hyper directly lets the service fail the request, which makes hyper abort
//! the connection without writing anything.

use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt as _;

use crate::api::DroppedConnection;

/// How long a graceful shutdown waits for in-flight calls before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The error that makes hyper drop a connection unanswered.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped by an injected fault")]
struct ConnectionDropped;

/// Serves `app` on `listener` until `shutdown` fires (or its sender is dropped), then waits
/// up to [`SHUTDOWN_GRACE`] for open connections to finish.
pub(crate) async fn serve(listener: TcpListener, app: Router, mut shutdown: watch::Receiver<()>) {
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).keep_alive(true);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    // Small JSON answers: do not let Nagle delay them.
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::debug!(%error, "set_nodelay failed");
                    }
                    let app = app.clone();
                    let service = service_fn(move |request: hyper::Request<Incoming>| {
                        let app = app.clone();
                        async move {
                            let response = match app.oneshot(request).await {
                                Ok(response) => response,
                                Err(never) => match never {},
                            };
                            if response.extensions().get::<DroppedConnection>().is_some() {
                                return Err(ConnectionDropped);
                            }
                            Ok(response)
                        }
                    });
                    let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                    tokio::spawn(async move {
                        if let Err(error) = connection.await {
                            tracing::debug!(%error, "sandbox connection ended");
                        }
                    });
                }
                // Typically EMFILE under a benchmark: back off instead of spinning.
                Err(error) => {
                    tracing::warn!(%error, "sandbox accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("sandbox shutdown: connections still open after the grace period");
    }
}
