//! Argument validation, and the load generator end to end against the bare server.

use clap::Parser;
use tokio::net::TcpListener;

use super::*;

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    args: HttpArgs,
}

fn parse(args: &[&str]) -> std::result::Result<HttpArgs, clap::Error> {
    Cli::try_parse_from(std::iter::once("http").chain(args.iter().copied())).map(|c| c.args)
}

/// Resolves a plan with a stand-in gateway binary.
fn plan(args: &[&str]) -> Result<Plan> {
    let args = parse(args).expect("parses");
    Plan::resolve(&args, || Ok(PathBuf::from("/nowhere/tern-gateway")))
}

#[test]
fn defaults_and_quick() {
    let full = plan(&[]).unwrap();
    assert_eq!(full.connections, vec![64]);
    assert_eq!(full.size, 1024);
    assert_eq!(full.duration, Duration::from_secs(10));
    assert_eq!(full.warmup, Duration::from_secs(1));
    assert_eq!(full.sse_messages, 100_000);
    assert_eq!(full.sse_timeout, Duration::from_secs(60));
    assert_eq!(full.client_threads, 2);
    assert!(full.server_threads >= 1);
    assert_eq!(full.groups, vec![Group::Bare, Group::Produce, Group::Sse]);
    assert!(matches!(
        full.gateway,
        Some(GatewayHosting::Child { ref bin }) if bin == Path::new("/nowhere/tern-gateway")
    ));
    assert_eq!(full.dir, std::env::temp_dir());

    let quick = plan(&["--quick"]).unwrap();
    assert_eq!(quick.duration, Duration::from_secs(2));
    assert_eq!(quick.sse_messages, 20_000);
    let overridden = plan(&["--quick", "--duration", "3", "--sse-messages", "5"]).unwrap();
    assert_eq!(overridden.duration, Duration::from_secs(3));
    assert_eq!(overridden.sse_messages, 5);
}

#[test]
fn baseline_only_needs_no_gateway() {
    let args = parse(&["--baseline-only"]).unwrap();
    let plan = Plan::resolve(&args, || Err(BenchError::Args("no gateway".into()))).unwrap();
    assert_eq!(plan.groups, vec![Group::Bare]);
    assert!(plan.gateway.is_none());
    // The same through --scenarios.
    let args = parse(&["--scenarios", "bare"]).unwrap();
    assert!(
        Plan::resolve(&args, || Err(BenchError::Args("no gateway".into())))
            .unwrap()
            .gateway
            .is_none()
    );
    // A gateway scenario does need one.
    let args = parse(&["--scenarios", "bare,sse"]).unwrap();
    assert!(Plan::resolve(&args, || Err(BenchError::Args("no gateway".into()))).is_err());
}

#[test]
fn gateway_choices() {
    let external = plan(&["--gateway-url", "http://127.0.0.1:8080/"]).unwrap();
    assert!(matches!(
        external.gateway,
        Some(GatewayHosting::External { ref addr, .. }) if addr == "127.0.0.1:8080"
    ));
    let bin = plan(&["--gateway-bin", "/opt/tern-gateway"]).unwrap();
    assert!(matches!(
        bin.gateway,
        Some(GatewayHosting::Child { ref bin }) if bin == Path::new("/opt/tern-gateway")
    ));
    assert!(plan(&["--gateway-url", "https://127.0.0.1:8080"]).is_err());
    // Contradictions are clap errors.
    assert!(parse(&["--gateway-url", "http://a:1", "--gateway-bin", "x"]).is_err());
    assert!(parse(&["--baseline-only", "--gateway-url", "http://a:1"]).is_err());
    assert!(parse(&["--baseline-only", "--scenarios", "sse"]).is_err());
    assert!(parse(&["--scenarios", "nothing"]).is_err());
}

#[test]
fn rejects_nonsense_values() {
    for args in [
        &["--connections", "0"][..],
        &["--connections", "5000"],
        &["--size", "0"],
        &["--size", "5000000"],
        &["--duration", "0"],
        &["--duration", "NaN"],
        &["--warmup=-1"],
        &["--sse-messages", "0"],
        &["--sse-max-in-flight", "0"],
        &["--sse-timeout", "0"],
        &["--queues", "0"],
        &["--server-threads", "0"],
        &["--client-threads", "0"],
        &["--repeat", "0"],
    ] {
        let result = plan(args);
        assert!(
            matches!(result, Err(BenchError::Args(_))),
            "{args:?}: {result:?}"
        );
    }
}

#[test]
fn connections_are_sorted_and_deduplicated() {
    let plan = plan(&["--connections", "64,1,16,64"]).unwrap();
    assert_eq!(plan.connections, vec![1, 16, 64]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generator_drives_the_bare_server() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(server::serve_bare(listener));
    let load = ProduceLoad {
        endpoint: Arc::new(Endpoint::new(&addr, None).unwrap()),
        uri: load::uri("/v1/topics/T/messages").unwrap(),
        body: Bytes::from(vec![1u8; 1024]),
        connections: 8,
    };
    let window = Window::after_warmup(Duration::from_millis(50), Duration::from_millis(200));
    let outcome = load.run(window, None).await.unwrap();
    assert_eq!(outcome.errors, 0);
    assert!(outcome.tally.messages > 0);
    assert!(outcome.tally.latency.percentiles().is_some());

    // With a limit, exactly that many requests are sent.
    let window = Window {
        start: Instant::now(),
        end: Instant::now() + Duration::from_secs(30),
    };
    let outcome = load.run(window, Some(1000)).await.unwrap();
    assert_eq!(outcome.tally.messages, 1000);
}

#[tokio::test]
async fn non_2xx_answers_are_counted_as_errors() {
    use std::convert::Infallible;

    use http_body_util::Full;
    use hyper::service::service_fn;
    use hyper::{Response, StatusCode};
    use hyper_util::rt::TokioIo;

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|_| async {
                    let mut response = Response::new(Full::new(Bytes::from_static(b"busy")));
                    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                    Ok::<_, Infallible>(response)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let load = ProduceLoad {
        endpoint: Arc::new(Endpoint::new(&addr, None).unwrap()),
        uri: load::uri("/v1/topics/T/messages").unwrap(),
        body: Bytes::from_static(b"x"),
        connections: 2,
    };
    let window = Window {
        start: Instant::now(),
        end: Instant::now() + Duration::from_secs(30),
    };
    let outcome = load.run(window, Some(10)).await.unwrap();
    assert_eq!(outcome.tally.messages, 0);
    assert_eq!(outcome.errors, 10);
    assert_eq!(
        outcome.first_error.as_deref(),
        Some("503 Service Unavailable: busy")
    );
}
