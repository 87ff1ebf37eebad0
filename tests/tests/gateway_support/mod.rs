//! Shared by the gateway auth, tenancy, bad-input and slow-client tests: gateway configuration
//! files, gateways started with them, JWTs signed with the test keys in `gateway/tests/fixtures`
//! (TEST KEYS ONLY), checks on answers, and the requests and checks the tests of each pair
//! (auth and tenancy, bad input and slow clients) share.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hyper::Method;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use tempfile::TempDir;
use tern_tests::http::{Answer, Http};
use tern_tests::process::{
    ServerProcess, free_loopback_addr, start_gateway, start_local_gateway_with_namesrv,
};

/// The HS256 secret of the test gateways (at least 32 bytes, as the gateway requires).
pub const HS_SECRET: &str = "tern-gateway-auth-test-secret-0123456789";
/// The secret of the `hs-1` key in the fixtures' `jwks.json`.
pub const JWKS_HS_SECRET: &[u8] = b"jwks-shared-secret-of-32-bytes!!";
pub const ISSUER: &str = "https://issuer.tern.test/";
pub const AUDIENCE: &str = "tern";

/// A file of the gateway's key fixtures.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../gateway/tests/fixtures")
        .join(name)
}

/// A path as a TOML string.
pub fn toml_path(path: &Path) -> String {
    toml::Value::String(path.display().to_string()).to_string()
}

/// The `[auth]` section every auth test starts from: every algorithm, a secret, one PEM file per
/// public-key algorithm, the fixtures' JWKS, and a required issuer and audience.
pub fn auth_section() -> String {
    format!(
        "[auth]\nenabled = true\nhs256_secret = \"{HS_SECRET}\"\npublic_key_files = [{}, {}, {}]\n\
         jwks_file = {}\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n",
        toml_path(&fixture("rsa_public.pem")),
        toml_path(&fixture("ec_public.pem")),
        toml_path(&fixture("ed_public.pem")),
        toml_path(&fixture("jwks.json")),
    )
}

/// A `tern-gateway --local` with `config` as its configuration file, and a client of it. The
/// embedded NameServer's address is known, so tests can add gateways or RocketMQ-style clients.
pub struct TestGateway {
    pub process: ServerProcess,
    pub http: Http,
    pub namesrv: String,
    pub dir: TempDir,
}

impl TestGateway {
    pub fn local(config: &str) -> TestGateway {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("gateway.toml");
        std::fs::write(&file, config).expect("write gateway.toml");
        let namesrv = free_loopback_addr();
        let file = file.display().to_string();
        let process = start_local_gateway_with_namesrv(
            &dir.path().join("local"),
            &namesrv,
            &["--config", &file],
            |broker| {
                // The disk is shared with other builds: its fill level must not refuse writes or
                // delete the test's messages.
                broker.store.disk_refuse_write_ratio = 1.0;
                broker.store.disk_clean_forcibly_ratio = 1.0;
                broker.store.disk_clean_ratio = 1.0;
            },
        );
        let http = Http::new(process.addr());
        TestGateway {
            process,
            http,
            namesrv,
            dir,
        }
    }

    /// Another (stateless) gateway with configuration `config` in front of this one's NameServer.
    pub fn another(&self, name: &str, config: &str) -> (ServerProcess, Http) {
        let file = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&file, config).expect("write gateway config");
        let file = file.display().to_string();
        let key = tern_tests::process::receipt_key();
        let process = start_gateway(
            std::slice::from_ref(&self.namesrv),
            &key,
            &["--config", &file],
        );
        let http = Http::new(process.addr());
        (process, http)
    }

    /// Stops the gateway with SIGTERM and checks it exits cleanly (it did not crash). The wait
    /// runs off the test's runtime, so the test's clients keep working meanwhile (an HTTP/2
    /// client must answer the PING of the gateway's graceful GOAWAY).
    pub async fn stop(self) {
        let TestGateway { process, dir, .. } = self;
        let status = tokio::task::spawn_blocking(move || process.terminate())
            .await
            .expect("terminate");
        assert!(status.success(), "gateway exit: {status:?}");
        drop(dir);
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// Valid claims for `tenant` with `scope`: subject, an expiry 10 minutes out, the configured
/// issuer and audience.
pub fn claims(tenant: &str, scope: &str) -> Value {
    json!({
        "sub": format!("{tenant}-client"),
        "tenant": tenant,
        "scope": scope,
        "exp": now() + 600,
        "iss": ISSUER,
        "aud": AUDIENCE,
    })
}

/// A signing key and the algorithm it signs with.
pub struct Signer {
    alg: Algorithm,
    key: EncodingKey,
    kid: Option<String>,
}

impl Signer {
    pub fn hs256(secret: &[u8]) -> Signer {
        Signer {
            alg: Algorithm::HS256,
            key: EncodingKey::from_secret(secret),
            kid: None,
        }
    }

    /// HS384 with `secret`: an algorithm Tern never accepts.
    pub fn hs384(secret: &[u8]) -> Signer {
        Signer {
            alg: Algorithm::HS384,
            key: EncodingKey::from_secret(secret),
            kid: None,
        }
    }

    pub fn rs256(private_pem: &str) -> Signer {
        Signer {
            alg: Algorithm::RS256,
            key: EncodingKey::from_rsa_pem(&read_fixture(private_pem)).expect("RSA key"),
            kid: None,
        }
    }

    pub fn es256(private_pem: &str) -> Signer {
        Signer {
            alg: Algorithm::ES256,
            key: EncodingKey::from_ec_pem(&read_fixture(private_pem)).expect("EC key"),
            kid: None,
        }
    }

    pub fn eddsa(private_pem: &str) -> Signer {
        Signer {
            alg: Algorithm::EdDSA,
            key: EncodingKey::from_ed_pem(&read_fixture(private_pem)).expect("Ed25519 key"),
            kid: None,
        }
    }

    /// The same key, naming `kid` in the tokens' header.
    pub fn kid(mut self, kid: &str) -> Signer {
        self.kid = Some(kid.to_string());
        self
    }

    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = self.kid.clone();
        encode(&header, claims, &self.key).expect("sign a token")
    }
}

fn read_fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// A token for `tenant` with `scope`, signed with the gateway's HS256 secret.
pub fn token(tenant: &str, scope: &str) -> String {
    Signer::hs256(HS_SECRET.as_bytes()).sign(&claims(tenant, scope))
}

pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn b64url_decode(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).expect("base64url")
}

/// A token assembled by hand, for what `jsonwebtoken` would never write (`alg: none`, a payload
/// swapped under a signature).
pub fn hand_token(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes()),
        b64url(signature)
    )
}

/// Asserts a 401 problem with a `WWW-Authenticate: Bearer` challenge whose detail mentions
/// `reason` (so the token was refused for the reason the test means).
pub fn assert_unauthorized(answer: &Answer, reason: &str, case: &str) {
    assert_eq!(
        answer.status.as_u16(),
        401,
        "{case}: {}",
        String::from_utf8_lossy(&answer.body)
    );
    let problem = answer.problem(401);
    let challenge = answer.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer"),
        "{case}: WWW-Authenticate is {challenge:?}"
    );
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(reason),
        "{case}: detail {detail:?} does not mention {reason:?}"
    );
    assert_eq!(problem["retryable"], false, "{case}");
}

/// Asserts a problem answer with `status` whose `type` ends in `slug`; returns the problem.
pub fn assert_problem(answer: &Answer, status: u16, slug: &str, case: &str) -> Value {
    assert_eq!(
        answer.status.as_u16(),
        status,
        "{case}: {}",
        String::from_utf8_lossy(&answer.body)
    );
    let problem = answer.problem(status);
    let kind = problem["type"].as_str().unwrap_or_default();
    assert!(
        kind.ends_with(&format!("/{slug}")),
        "{case}: problem type {kind:?}, expected …/{slug}"
    );
    assert_eq!(problem["status"], status, "{case}");
    problem
}

/// Asserts a 200 JSON answer and returns its JSON.
pub fn ok(answer: &Answer, case: &str) -> Value {
    assert_eq!(
        answer.status.as_u16(),
        200,
        "{case}: {}",
        String::from_utf8_lossy(&answer.body)
    );
    answer.json()
}

// Shared by the auth and tenancy tests.

/// A scope that allows everything.
pub const ALL: &str = "admin publish:* consume:*";

/// Produces `body` to `topic`, asserting 200; returns the result JSON.
pub async fn produce(http: &Http, topic: &str, body: &str, headers: &[(&str, &str)]) -> Value {
    let answer = http
        .post(
            &format!("/v1/topics/{topic}/messages"),
            headers,
            body.to_string(),
        )
        .await;
    ok(&answer, &format!("produce {body:?} to {topic}"))
}

/// Receives from `group`/`topic` until `count` messages came or `timeout` passed (one receive may
/// not reach every queue); returns them.
pub async fn receive_all(
    http: &Http,
    group: &str,
    topic: &str,
    count: usize,
    timeout: Duration,
) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    let mut messages = Vec::new();
    while messages.len() < count && Instant::now() < deadline {
        let answer = http
            .post_json(
                &format!("/v1/groups/{group}/topics/{topic}/messages:receive"),
                &json!({"max": 32, "waitSeconds": 1, "invisibleSeconds": 60}),
            )
            .await;
        let json = ok(&answer, &format!("receive {group}/{topic}"));
        messages.extend(json["messages"].as_array().cloned().unwrap_or_default());
    }
    messages
}

pub fn bodies(messages: &[Value]) -> BTreeSet<String> {
    messages
        .iter()
        .map(|m| m["body"].as_str().unwrap_or_default().to_string())
        .collect()
}

// Shared by the bad-input and slow-client tests.

pub const MAX_MESSAGE: usize = 1024;
pub const MAX_JSON: usize = 2048;
pub const MAX_RECEIPTS: usize = 4;
pub const MAX_BATCH: usize = 8;
pub const MAX_HEADER_BYTES: usize = 8192;
pub const HEADER_TIMEOUT: Duration = Duration::from_millis(1000);
pub const BODY_TIMEOUT: Duration = Duration::from_millis(1000);

/// The `[limits]` section of the bad-input and slow-client tests: the small limits above.
pub fn limits_section() -> String {
    format!(
        "[limits]\nmax_message_bytes = {MAX_MESSAGE}\nmax_json_bytes = {MAX_JSON}\n\
         max_receipts = {MAX_RECEIPTS}\nmax_batch_messages = {MAX_BATCH}\nmax_header_bytes = {MAX_HEADER_BYTES}\nmax_headers = 100\n\
         header_read_timeout_ms = {}\nbody_read_timeout_ms = {}\n",
        HEADER_TIMEOUT.as_millis(),
        BODY_TIMEOUT.as_millis(),
    )
}

/// Creates topic `topic` with two queues.
pub async fn create_topic(http: &Http, topic: &str) {
    let answer = http
        .json(
            Method::PUT,
            &format!("/v1/topics/{topic}"),
            &json!({"queues": 2}),
        )
        .await;
    ok(&answer, &format!("PUT /v1/topics/{topic}"));
}

/// Messages stored in `topic`: the sum of its queues' max offsets.
pub async fn stored(http: &Http, topic: &str) -> i64 {
    let info = ok(
        &http.get(&format!("/v1/topics/{topic}")).await,
        "topic info",
    );
    info["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .map(|q| q["maxOffset"].as_i64().expect("maxOffset"))
        .sum()
}

/// Asserts that `topic` holds exactly `expected` messages. The broker indexes a message shortly
/// after acknowledging it, so this waits up to 10 s for the count to reach `expected`; a count
/// above it fails at once.
pub async fn assert_stored(http: &Http, topic: &str, expected: i64, case: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let count = stored(http, topic).await;
        assert!(
            count <= expected,
            "{case}: {count} messages in {topic}, expected {expected}"
        );
        if count == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{case}: {count} messages in {topic}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts that `topic` holds its `expected` messages and nothing more: produces a marker and
/// waits until it is indexed. The broker indexes messages in the order it stored them, so
/// anything a refused request had stored would be counted by then.
pub async fn assert_nothing_more(http: &Http, topic: &str, expected: i64, case: &str) {
    ok(
        &http
            .post(&format!("/v1/topics/{topic}/messages"), &[], "marker")
            .await,
        "marker",
    );
    assert_stored(http, topic, expected + 1, case).await;
}
