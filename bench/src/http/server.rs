//! The servers under test: the bare hyper server of the baseline (this executable's hidden
//! `http-echo-server` subcommand, run as a child) and the gateway (a `tern-gateway --local`
//! child, or one already running elsewhere).
//!
//! Children are stopped (SIGTERM, then SIGKILL) and their directories deleted when the
//! [`Server`] is dropped, so an error half-way or Ctrl-C leaves nothing running or on disk.

use std::convert::Infallible;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tempfile::TempDir;
use tokio::net::TcpListener;

use crate::broker::ChildProcess;
use crate::error::{BenchError, Context, Result};

/// How the line the bare-server child prints starts; its address follows.
pub const BARE_READY: &str = "tern-bench-http listening on";
/// How the gateway announces its HTTP address on stdout.
pub const GATEWAY_READY: &str = "tern-gateway listening on";

/// The hidden `http-echo-server` subcommand's arguments.
#[derive(Debug, Args)]
pub struct EchoServerArgs {
    /// Worker threads of its multi-thread runtime.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

/// The hidden `http-echo-server` subcommand: a bare hyper server on an ephemeral loopback port,
/// serving until stdin closes (the parent dropped its end or died) or a SIGTERM arrives.
pub fn run_echo_server(args: EchoServerArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .thread_name("bare-http")
        .enable_all()
        .build()
        .context(|| "starting the bare server's runtime".to_owned())?;
    let listener = runtime
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .context(|| "binding the bare server".to_owned())?;
    let addr = listener
        .local_addr()
        .context(|| "bare server address".to_owned())?;
    runtime.spawn(serve_bare(listener));
    println!("{BARE_READY} {addr}");
    let _ = std::io::stdout().flush();
    let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
    Ok(())
}

/// Serves HTTP/1.1 on `listener`: every request gets `200` with the body `{}`, after its own
/// body was read (which a keep-alive server must do anyway, to find the next request), and
/// nothing else happens: the most this machine's HTTP stack can answer.
pub async fn serve_bare(listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of file descriptors, say: let connections close, then go on.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(|request: Request<Incoming>| async move {
                let _ = request.into_body().collect().await;
                let mut response = Response::new(Full::new(Bytes::from_static(b"{}")));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                Ok::<_, Infallible>(response)
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Where the gateway runs, as the command line chose.
#[derive(Debug, Clone)]
pub enum GatewayHosting {
    /// `tern-gateway --local` (at this path) as a child, with a fresh data directory.
    Child { bin: PathBuf },
    /// An already running gateway at `addr` (`host:port`, from `url`): nothing is started or
    /// cleaned up on its side.
    External { url: String, addr: String },
}

/// A server under test; a child is stopped and its directory deleted when this is dropped.
pub struct Server {
    /// `host:port`.
    pub addr: String,
    /// The child's process id (for its CPU time), `None` for an external gateway.
    pub pid: Option<u32>,
    /// Held for its `Drop`, which stops the child.
    _process: Option<ChildProcess>,
    /// Declared after the process, so the child has stopped before its data is deleted.
    _data: Option<TempDir>,
}

impl Server {
    /// The bare server as a child process with `threads` runtime workers; its log goes to
    /// `work`.
    pub fn bare(threads: usize, work: &Path) -> Result<Server> {
        let exe = std::env::current_exe().context(|| "finding tern-bench itself".to_owned())?;
        let mut command = Command::new(exe);
        command
            .arg("http-echo-server")
            .arg("--threads")
            .arg(threads.to_string());
        let log = work.join("http-echo-server.log");
        let (process, addr) = ChildProcess::spawn(command, "bare server", BARE_READY, &log, true)?;
        Ok(Server {
            addr: parse_addr(&addr, "the bare server")?,
            pid: Some(process.pid()),
            _process: Some(process),
            _data: None,
        })
    }

    /// The gateway: a `tern-gateway --local` child with a fresh data directory under `work`
    /// (its embedded broker uses ASYNC_FLUSH), or the external one.
    pub fn gateway(hosting: &GatewayHosting, work: &Path) -> Result<Server> {
        let bin = match hosting {
            GatewayHosting::External { addr, .. } => {
                return Ok(Server {
                    addr: addr.clone(),
                    pid: None,
                    _process: None,
                    _data: None,
                });
            }
            GatewayHosting::Child { bin } => bin,
        };
        let data = tempfile::Builder::new()
            .prefix("gateway-")
            .tempdir_in(work)
            .context(|| format!("creating a data directory in {}", work.display()))?;
        let mut command = Command::new(bin);
        command
            .arg("--local")
            .arg("--data-dir")
            .arg(data.path().join("data"))
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--namesrv-listen")
            .arg("127.0.0.1:0")
            .arg("--broker-listen")
            .arg("127.0.0.1:0");
        let log = data.path().join("gateway.log");
        let (process, addr) =
            ChildProcess::spawn(command, "tern-gateway", GATEWAY_READY, &log, false)?;
        Ok(Server {
            addr: parse_addr(&addr, "tern-gateway")?,
            pid: Some(process.pid()),
            _process: Some(process),
            _data: Some(data),
        })
    }
}

/// The `host:port` in what a server printed after its ready prefix: `127.0.0.1:8080`, or the same
/// as an `http://` URL.
fn parse_addr(printed: &str, who: &str) -> Result<String> {
    let word = printed.split_whitespace().next().unwrap_or("");
    let addr = word.strip_prefix("http://").unwrap_or(word);
    let addr = addr.strip_suffix('/').unwrap_or(addr);
    match addr.parse::<std::net::SocketAddr>() {
        Ok(addr) => Ok(addr.to_string()),
        Err(_) => Err(BenchError::Invalid(format!(
            "{who} printed {printed:?} where an address (host:port) was expected"
        ))),
    }
}

/// `--gateway-url`: `http://host[:port][/]` to the `host:port` to connect to (port 80 if none).
/// Only plain HTTP: the benchmark speaks HTTP/1.1 without TLS.
pub fn parse_gateway_url(url: &str) -> Result<String> {
    let bad = |why: &str| Err(BenchError::Args(format!("--gateway-url {url:?}: {why}")));
    let Some(rest) = url.strip_prefix("http://") else {
        return bad("expected http://host:port (plain HTTP; https is not supported)");
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() {
        return bad("no host");
    }
    if authority.contains(['/', '?', '#', '@']) {
        return bad("give only the scheme, host and port (no path, query or user)");
    }
    // `[v6]:port`, `[v6]`, `host:port` or `host`.
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((host, "")) => (format!("[{host}]"), None),
            Some((host, port)) => match port.strip_prefix(':') {
                Some(port) => (format!("[{host}]"), Some(port)),
                None => return bad("malformed IPv6 address"),
            },
            None => return bad("malformed IPv6 address"),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (authority.to_owned(), None),
        }
    };
    if host.is_empty() || host == "[]" || host.contains(':') && !host.starts_with('[') {
        return bad("malformed host");
    }
    let port = match port {
        None => 80,
        Some(port) => match port.parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => return bad("the port must be in 1..=65535"),
        },
    };
    Ok(format!("{host}:{port}"))
}

/// `tern-gateway` next to this executable (both land in `target/<profile>/`).
pub fn default_gateway_bin() -> Result<PathBuf> {
    let exe = std::env::current_exe().context(|| "finding tern-bench itself".to_owned())?;
    let bin = exe.with_file_name("tern-gateway");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(BenchError::Args(format!(
            "{} not found: build it with `cargo build --release -p tern-gateway` (or pass \
             --gateway-bin or --gateway-url, or measure only the bare server with \
             --baseline-only)",
            bin.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_urls() {
        let ok = |url: &str| parse_gateway_url(url).unwrap();
        assert_eq!(ok("http://127.0.0.1:8080"), "127.0.0.1:8080");
        assert_eq!(ok("http://127.0.0.1:8080/"), "127.0.0.1:8080");
        assert_eq!(ok("http://gateway.local"), "gateway.local:80");
        assert_eq!(ok("http://[::1]:9000"), "[::1]:9000");
        assert_eq!(ok("http://[::1]"), "[::1]:80");
        for bad in [
            "https://127.0.0.1:8080",
            "127.0.0.1:8080",
            "http://",
            "http://host:0",
            "http://host:99999",
            "http://host:port",
            "http://host:80/v1",
            "http://user@host:80",
            "http://::1:80",
            "http://[::1",
            "http://:80",
        ] {
            assert!(parse_gateway_url(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn printed_addresses() {
        assert_eq!(parse_addr("127.0.0.1:4000", "x").unwrap(), "127.0.0.1:4000");
        assert_eq!(
            parse_addr("http://127.0.0.1:4000/ (local)", "x").unwrap(),
            "127.0.0.1:4000"
        );
        assert!(parse_addr("somewhere", "x").is_err());
    }

    #[tokio::test]
    async fn the_bare_server_answers_200_on_a_kept_alive_connection() {
        use super::super::load::{Endpoint, connect, exchange, uri};
        use hyper::Method;

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(serve_bare(listener));
        let endpoint = Endpoint::new(&addr, None).unwrap();
        let mut sender = connect(&endpoint).await.unwrap();
        for _ in 0..3 {
            let request = endpoint.request(
                Method::POST,
                uri("/v1/topics/T/messages").unwrap(),
                None,
                Bytes::from(vec![7u8; 1024]),
            );
            let (status, body) = exchange(&mut sender, request, "POST").await.unwrap();
            assert_eq!(status, 200);
            assert_eq!(&body[..], b"{}");
        }
    }
}
