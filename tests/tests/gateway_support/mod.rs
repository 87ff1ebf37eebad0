//! Shared by the gateway auth and bad-input tests: gateway configuration files, gateways started
//! with them, JWTs signed with the test keys in `gateway/tests/fixtures` (TEST KEYS ONLY), and
//! checks on answers.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
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
