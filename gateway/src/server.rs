//! The HTTP server: accepting connections, TLS, HTTP/1.1 and HTTP/2, limits, graceful shutdown.
//!
//! One hyper-util "auto" connection per socket serves HTTP/1.1 or HTTP/2 (h2c by prior knowledge
//! in clear text, ALPN `h2` / `http/1.1` over TLS). The limits that protect the gateway from slow
//! or greedy clients sit here, below the router: a bound on connections, on the request head's
//! size and header count, and on the time a client may take to send a head (slowloris).
//! Shutdown stops accepting, lets requests in flight finish (SSE streams end on the shutdown
//! signal themselves) and gives up after a grace period.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::config::{Limits, TlsConfig};

/// hyper's smallest read buffer; the head limit cannot go below it.
const MIN_HTTP1_BUFFER: usize = 8 * 1024;
/// How long in-flight requests get to finish once shutdown starts. Long polls and event streams
/// end at once on shutdown, so what remains are broker calls (3 s budget by default) and clients
/// slow to read their answer.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// HTTP/2 streams per connection at most.
const MAX_H2_STREAMS: u32 = 256;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// A TLS acceptor offering `h2` and `http/1.1` by ALPN (rustls with the ring provider).
pub fn tls_acceptor(config: &TlsConfig) -> Result<TlsAcceptor, TlsError> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.display().to_string(),
            source,
        })
    };
    let certs = rustls_pemfile::certs(&mut read(&config.cert_file)?.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Invalid(format!("certificate: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::Invalid(format!(
            "{}: no certificate",
            config.cert_file.display()
        )));
    }
    let key = rustls_pemfile::private_key(&mut read(&config.key_file)?.as_slice())
        .map_err(|e| TlsError::Invalid(format!("private key: {e}")))?
        .ok_or_else(|| {
            TlsError::Invalid(format!("{}: no private key", config.key_file.display()))
        })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Invalid(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Invalid(e.to_string()))?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}

/// The connection builder with every limit applied.
fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.header_read_timeout_ms))
        .max_buf_size(limits.max_header_bytes.max(MIN_HTTP1_BUFFER))
        .max_headers(limits.max_headers)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes as u32)
        .max_concurrent_streams(MAX_H2_STREAMS)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let builder = Arc::new(builder(&limits));
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let handshake_timeout = Duration::from_millis(limits.header_read_timeout_ms);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = connections.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        // Set when the connection delivers its first request (see `first_request_within`).
        let served = Arc::new(AtomicBool::new(false));
        let service = {
            let served = served.clone();
            TowerToHyperService::new(app.clone().map_request(
                move |request: hyper::Request<hyper::body::Incoming>| {
                    served.store(true, Ordering::Relaxed);
                    request
                },
            ))
        };
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    let conn = watcher.watch(conn.into_owned());
                    log_end(
                        peer,
                        first_request_within(conn, &served, handshake_timeout).await,
                    );
                }
                Some(acceptor) => {
                    let stream = match tokio::time::timeout(
                        handshake_timeout,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    let conn = watcher.watch(conn.into_owned());
                    log_end(
                        peer,
                        first_request_within(conn, &served, handshake_timeout).await,
                    );
                }
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; closing them");
        }
    }
}

type ConnResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Runs a connection, closing it when it has delivered no request within `timeout` (the
/// header read timeout). hyper bounds the time to read an HTTP/1 head only once it knows the
/// protocol; before that, while the first bytes are read to tell HTTP/1 from HTTP/2, nothing
/// bounds the wait, so a client that connects and sends nothing (or a few bytes) would hold a
/// connection slot forever.
async fn first_request_within(
    conn: impl std::future::Future<Output = ConnResult>,
    served: &AtomicBool,
    timeout: Duration,
) -> ConnResult {
    tokio::pin!(conn);
    tokio::select! {
        result = &mut conn => result,
        _ = tokio::time::sleep(timeout) => {
            if served.load(Ordering::Relaxed) {
                conn.await
            } else {
                Err(format!("no request within {} ms", timeout.as_millis()).into())
            }
        }
    }
}

fn log_end(peer: SocketAddr, result: ConnResult) {
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
