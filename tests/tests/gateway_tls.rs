//! The gateway over TLS: ALPN offers h2 and http/1.1, both serve the API, and a clear-text
//! request to the TLS port gets no answer.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tern_tests::process::start_local_gateway;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../gateway/tests/fixtures")
        .join(name)
}

/// A connector trusting only the test CA, offering `alpn`.
fn connector(alpn: &[&[u8]]) -> TlsConnector {
    let pem = std::fs::read(fixture("tls_ca.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

async fn tls(addr: &str, alpn: &[&[u8]]) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    connector(alpn)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake")
}

fn produce(addr: &str, body: &'static str) -> Request<Full<Bytes>> {
    Request::post(format!("https://{addr}/v1/topics/secure/messages"))
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

// Multi-threaded: the client connections must keep answering (h2 GOAWAY/PING) while the test
// thread blocks in `terminate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_h2_and_http1_by_alpn() {
    let dir = tempfile::tempdir().unwrap();
    let cert = fixture("tls_cert.pem").display().to_string();
    let key = fixture("tls_key.pem").display().to_string();
    let gateway = start_local_gateway(
        dir.path(),
        &["--tls-cert", &cert, "--tls-key", &key],
        |_| {},
    );
    let addr = gateway.addr().to_string();

    // h2 by ALPN.
    let stream = tls(&addr, &[b"h2", b"http/1.1"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let answer = h2.send_request(produce(&addr, "over h2")).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.version(), hyper::Version::HTTP_2);
    let body = answer.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["topic"], "secure");

    // http/1.1 by ALPN.
    let stream = tls(&addr, &[b"http/1.1"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut request = produce(&addr, "over http/1.1");
    request.headers_mut().insert("host", addr.parse().unwrap());
    let answer = h1.send_request(request).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.version(), hyper::Version::HTTP_11);

    // Clear text to the TLS port: no HTTP answer.
    let mut plain = TcpStream::connect(&addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let read = tokio::time::timeout(std::time::Duration::from_secs(15), plain.read(&mut buf))
        .await
        .expect("the gateway closes the connection");
    let text = String::from_utf8_lossy(&buf[..read.unwrap_or(0)]).to_string();
    assert!(!text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(gateway.terminate().success());
}
