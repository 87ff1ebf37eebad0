//! Tests of [`Verifier`] with real tokens signed by `jsonwebtoken` using the keys in
//! `gateway/tests/fixtures` (TEST KEYS ONLY; `generate.sh` there makes new ones).

use std::path::PathBuf;

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header as JwtHeader, encode};
use serde_json::{Value, json};

use super::*;

mod config;
mod tokens;

const SECRET: &str = "hs256-test-secret-0123456789abcdef";
const JWKS_SECRET: &[u8] = b"jwks-shared-secret-of-32-bytes!!";
const NOW: i64 = 1_700_000_000;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures")).join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).expect("fixture")
}

fn hs_key() -> EncodingKey {
    EncodingKey::from_secret(SECRET.as_bytes())
}
fn rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(&read("rsa_private.pem")).unwrap()
}
fn rsa2_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(&read("rsa2_private.pem")).unwrap()
}
fn ec_key() -> EncodingKey {
    EncodingKey::from_ec_pem(&read("ec_private.pem")).unwrap()
}
fn ed_key() -> EncodingKey {
    EncodingKey::from_ed_pem(&read("ed_private.pem")).unwrap()
}
fn ed2_key() -> EncodingKey {
    EncodingKey::from_ed_pem(&read("ed2_private.pem")).unwrap()
}

fn claims() -> Value {
    json!({
        "sub": "alice",
        "tenant": "acme",
        "exp": NOW + 600,
        "scope": "publish:orders publish:ord* consume:* admin",
    })
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    sign_kid(alg, key, None, claims)
}

fn sign_kid(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = JwtHeader::new(alg);
    header.kid = kid.map(str::to_string);
    encode(&header, claims, key).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    B64_STRICT.encode(bytes)
}

/// A token assembled by hand, for headers `jsonwebtoken` would not write.
fn hand_token(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes()),
        b64(signature)
    )
}

fn enabled() -> AuthConfig {
    AuthConfig {
        enabled: true,
        ..AuthConfig::default()
    }
}

/// Every kind of key: the secret and one PEM file per public-key algorithm.
fn all_keys() -> AuthConfig {
    AuthConfig {
        hs256_secret: Some(SECRET.into()),
        public_key_files: vec![
            fixture("rsa_public.pem"),
            fixture("ec_public.pem"),
            fixture("ed_public.pem"),
        ],
        ..enabled()
    }
}

fn verifier(config: &AuthConfig) -> Verifier {
    Verifier::from_config(config).expect("valid config")
}

fn check(config: &AuthConfig, token: &str) -> Result<Principal, AuthError> {
    verifier(config).verify_at(token, NOW)
}

fn config_error(config: &AuthConfig) -> AuthConfigError {
    Verifier::from_config(config).expect_err("config must be refused")
}
