//! JWT authentication: who is calling, for which tenant, allowed to do what.
//!
//! The contract (shared architecture doc, "Auth (JWT)"): `Authorization: Bearer <jwt>` with a
//! valid signature by one of the configured keys in an allowed algorithm (HS256, RS256, ES256,
//! EdDSA); `exp` required; `nbf` checked when present; `iss` and `aud` checked when configured;
//! 30 s leeway. The tenant claim namespaces every resource, so it is required and must be a valid
//! name; `scope` lists what the token may do (see [`Scopes`]).
//!
//! The JOSE header is read by hand rather than by a general JWT library path so the rules that
//! matter are visible in one place:
//! - the header's `alg` must be in the allowlist, and only keys of that exact kind are tried
//!   (an RSA public key is never used as an HMAC secret; `none` is never accepted);
//! - keys are only ever the configured ones: `jwk`, `jku`, `x5u` and `x5c` header members are
//!   ignored, and a header with `crit` (extensions Tern cannot honour) is refused;
//! - claims are parsed only after the signature checks out.
//!
//! Times are compared against a caller-supplied clock in [`Verifier::verify_at`], so the leeway
//! boundaries are tested exactly.

mod keys;
mod scope;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use keys::{Key, KeyKind};
pub use keys::{MAX_KEYS, MIN_HMAC_SECRET_BYTES};
pub use scope::{MAX_SCOPES, Scopes};

/// The longest token accepted, in bytes. Real tokens are well under 2 KiB; the limit bounds the
/// base64 and JSON work an unauthenticated request can cause.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The longest tenant name (the broker-side name `tenant%name` is at most 127 characters).
pub const MAX_TENANT_LEN: usize = 64;

/// The largest leeway accepted in configuration: more would make `exp` nearly meaningless.
pub const MAX_LEEWAY_SECS: u64 = 600;

/// Base64url as JWS requires it: no padding, no stray bits, so one token has one spelling.
const B64_STRICT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

/// The `[auth]` section of the gateway's configuration.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Whether requests must carry a token. Off by default (local development).
    pub enabled: bool,
    /// The algorithms tokens may use; only `HS256`, `RS256`, `ES256` and `EdDSA` may be listed.
    pub algorithms: Vec<String>,
    /// An HS256 shared secret (its UTF-8 bytes, at least 32).
    pub hs256_secret: Option<String>,
    /// A file holding the HS256 secret (trailing newlines are not part of it).
    pub hs256_secret_file: Option<PathBuf>,
    /// PEM public keys, one per file: RSA, EC P-256 or Ed25519 (told apart by the key itself).
    pub public_key_files: Vec<PathBuf>,
    /// A JWKS document; its keys are matched by `kid` when a token names one.
    pub jwks_file: Option<PathBuf>,
    /// The required `iss`, when set.
    pub issuer: Option<String>,
    /// The required `aud` (the token's may be a string or an array), when set.
    pub audience: Option<String>,
    /// The claim that names the tenant.
    pub tenant_claim: String,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> AuthConfig {
        AuthConfig {
            enabled: false,
            algorithms: KeyKind::ALL
                .iter()
                .map(|k| k.alg_name().to_string())
                .collect(),
            hs256_secret: None,
            hs256_secret_file: None,
            public_key_files: Vec::new(),
            jwks_file: None,
            issuer: None,
            audience: None,
            tenant_claim: "tenant".to_string(),
            leeway_secs: 30,
        }
    }
}

/// Why an auth configuration cannot be used. Messages name files, never key material.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("unknown JWT algorithm {0:?} (allowed: HS256, RS256, ES256, EdDSA)")]
    UnknownAlgorithm(String),
    #[error(
        "auth is enabled but no key is configured (hs256_secret, hs256_secret_file, \
         public_key_files or jwks_file)"
    )]
    NoKeys,
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid key in {origin}: {reason}")]
    InvalidKey { origin: String, reason: String },
    #[error("invalid auth configuration: {0}")]
    Invalid(String),
}

/// Why a request's token was refused. All of them mean 401 for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token was given")]
    Missing,
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token is longer than {MAX_TOKEN_LEN} bytes")]
    TooLong,
    /// The header's `alg`, sanitised and shortened (it comes from the client).
    #[error("the token's algorithm {0:?} is not accepted")]
    UnsupportedAlgorithm(String),
    #[error("the token's signature is not valid")]
    BadSignature,
    #[error("the token was not signed by a known key")]
    UnknownKey,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token has no expiry (exp)")]
    MissingExp,
    #[error("the token's issuer is not accepted")]
    WrongIssuer,
    #[error("the token's audience is not accepted")]
    WrongAudience,
    #[error("the token names no tenant")]
    MissingTenant,
    #[error(
        "the token's tenant is not a valid name ([A-Za-z0-9_-], 1 to {MAX_TENANT_LEN} characters)"
    )]
    InvalidTenant,
}

impl AuthError {
    /// Text for the client (a problem+json `detail`): what is wrong with the token, without key
    /// material or configuration details.
    pub fn detail(&self) -> String {
        self.to_string()
    }

    /// The RFC 6750 `error` code for the `WWW-Authenticate: Bearer` header, or `None` when no
    /// token was given (then the header carries no error, per RFC 6750 §3.1).
    pub fn bearer_error_code(&self) -> Option<&'static str> {
        match self {
            AuthError::Missing => None,
            AuthError::Malformed | AuthError::TooLong => Some("invalid_request"),
            _ => Some("invalid_token"),
        }
    }
}

/// The caller, as established by a verified token.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The `sub` claim, or empty when the token has none.
    pub subject: String,
    /// The tenant that namespaces every resource this caller touches.
    pub tenant: String,
    pub scopes: Scopes,
}

impl Principal {
    /// Whether the token has a `publish:` scope matching `topic` (the client's name).
    pub fn can_publish(&self, topic: &str) -> bool {
        self.scopes.can_publish(topic)
    }

    /// Whether the token has a `consume:` scope matching `topic` (the client's name).
    pub fn can_consume(&self, topic: &str) -> bool {
        self.scopes.can_consume(topic)
    }

    /// Whether the token has the `admin` scope.
    pub fn is_admin(&self) -> bool {
        self.scopes.is_admin()
    }
}

/// Extracts the token from an `Authorization` header value: `Bearer <jwt>`, the scheme in any
/// case (RFC 7235 §2.1), surrounding spaces tolerated.
pub fn bearer_token(header_value: &str) -> Result<&str, AuthError> {
    let value = header_value.trim_matches([' ', '\t']);
    if value.is_empty() || value.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Missing);
    }
    let (scheme, token) = value.split_once([' ', '\t']).ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed);
    }
    let token = token.trim_start_matches([' ', '\t']);
    if token.len() > MAX_TOKEN_LEN {
        return Err(AuthError::TooLong);
    }
    if token.contains(|c: char| c.is_ascii_whitespace() || c.is_control()) {
        return Err(AuthError::Malformed);
    }
    Ok(token)
}

/// Checks tokens against the configured keys and rules. Immutable once built: share it in an
/// `Arc` across every connection.
pub struct Verifier {
    allowed: Vec<KeyKind>,
    keys: Vec<Key>,
    issuer: Option<String>,
    audience: Option<String>,
    tenant_claim: String,
    leeway: i64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("allowed", &self.allowed)
            .field(
                "keys",
                &self
                    .keys
                    .iter()
                    .map(|k| (k.kind, k.kid.as_deref()))
                    .collect::<Vec<_>>(),
            )
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("tenant_claim", &self.tenant_claim)
            .field("leeway", &self.leeway)
            .finish()
    }
}

/// The JOSE header members Tern reads.
#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    crit: Option<serde::de::IgnoredAny>,
}

impl Verifier {
    /// Builds a verifier, reading every key file now. Fails on an unknown algorithm, a file that
    /// cannot be read or holds no usable key, or, when auth is enabled, on having no key at all.
    /// With auth disabled the configured keys are still checked, so a mistake shows before auth
    /// is turned on.
    pub fn from_config(config: &AuthConfig) -> Result<Verifier, AuthConfigError> {
        let mut allowed = Vec::new();
        for name in &config.algorithms {
            let kind = KeyKind::from_alg(name)
                .ok_or_else(|| AuthConfigError::UnknownAlgorithm(name.clone()))?;
            if !allowed.contains(&kind) {
                allowed.push(kind);
            }
        }
        if config.enabled && allowed.is_empty() {
            return Err(AuthConfigError::Invalid("algorithms is empty".into()));
        }
        if config.tenant_claim.is_empty() {
            return Err(AuthConfigError::Invalid("tenant_claim is empty".into()));
        }
        if config.leeway_secs > MAX_LEEWAY_SECS {
            return Err(AuthConfigError::Invalid(format!(
                "leeway_secs is {}; at most {MAX_LEEWAY_SECS} is allowed",
                config.leeway_secs
            )));
        }
        for (name, value) in [("issuer", &config.issuer), ("audience", &config.audience)] {
            if value.as_deref() == Some("") {
                return Err(AuthConfigError::Invalid(format!(
                    "{name} is empty; leave it unset"
                )));
            }
        }
        let keys = keys::load(config, &allowed)?;
        if config.enabled && keys.is_empty() {
            return Err(AuthConfigError::NoKeys);
        }
        Ok(Verifier {
            allowed,
            keys,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            tenant_claim: config.tenant_claim.clone(),
            // Bounded by MAX_LEEWAY_SECS above.
            leeway: config.leeway_secs as i64,
        })
    }

    /// How many keys were loaded (for the start-up log).
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Verifies a token (without the `Bearer ` prefix) against the current time.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.verify_at(token, now)
    }

    /// Verifies a token as of `now` (seconds since the Unix epoch).
    pub fn verify_at(&self, token: &str, now: i64) -> Result<Principal, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::TooLong);
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed);
        };
        let header: Header =
            serde_json::from_slice(&decode_b64(header_b64)?).map_err(|_| AuthError::Malformed)?;
        if header.crit.is_some() {
            return Err(AuthError::Malformed);
        }
        let kind = KeyKind::from_alg(&header.alg)
            .filter(|kind| self.allowed.contains(kind))
            .ok_or_else(|| AuthError::UnsupportedAlgorithm(sanitize(&header.alg)))?;
        let signature = decode_b64(signature_b64)?;
        let payload = decode_b64(payload_b64)?;

        // The signing input is the token up to its last '.' (always in bounds; `get` anyway).
        let message = token
            .as_bytes()
            .get(..header_b64.len() + 1 + payload_b64.len())
            .ok_or(AuthError::Malformed)?;
        let mut tried = false;
        let mut verified = false;
        for key in self.candidates(kind, header.kid.as_deref()) {
            tried = true;
            if key.verifies(message, &signature) {
                verified = true;
                break;
            }
        }
        if !tried {
            return Err(AuthError::UnknownKey);
        }
        if !verified {
            return Err(AuthError::BadSignature);
        }

        let claims: Map<String, Value> =
            serde_json::from_slice(&payload).map_err(|_| AuthError::Malformed)?;
        self.check_claims(&claims, now)
    }

    /// The keys a token of this kind may be checked with. A `kid` that some key has selects that
    /// key; otherwise (no `kid`, or one only the identity provider knows) the keys without a
    /// `kid` (the secret and PEM files) are tried, and, for a token without `kid`, every JWKS key.
    fn candidates<'a>(
        &'a self,
        kind: KeyKind,
        kid: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Key> + 'a {
        let of_kind = move || self.keys.iter().filter(move |k| k.kind == kind);
        let named = kid.is_some_and(|kid| of_kind().any(|k| k.kid.as_deref() == Some(kid)));
        of_kind().filter(move |k| match (kid, k.kid.as_deref()) {
            (Some(kid), Some(key_kid)) => kid == key_kid,
            (Some(_), None) => !named,
            (None, _) => true,
        })
    }

    fn check_claims(&self, claims: &Map<String, Value>, now: i64) -> Result<Principal, AuthError> {
        let exp = numeric_date(claims.get("exp"))?.ok_or(AuthError::MissingExp)?;
        // RFC 7519 §4.1.4: the token is valid only *before* exp (plus the leeway).
        if now >= exp.saturating_add(self.leeway) {
            return Err(AuthError::Expired);
        }
        // RFC 7519 §4.1.5: valid from nbf on (minus the leeway).
        if let Some(nbf) = numeric_date(claims.get("nbf"))?
            && now.saturating_add(self.leeway) < nbf
        {
            return Err(AuthError::NotYetValid);
        }
        if let Some(issuer) = &self.issuer
            && claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str())
        {
            return Err(AuthError::WrongIssuer);
        }
        if let Some(audience) = &self.audience {
            let accepted = match claims.get("aud") {
                Some(Value::String(aud)) => aud == audience,
                Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(audience)),
                _ => false,
            };
            if !accepted {
                return Err(AuthError::WrongAudience);
            }
        }
        let tenant = match claims.get(&self.tenant_claim) {
            None | Some(Value::Null) => return Err(AuthError::MissingTenant),
            Some(Value::String(tenant)) if is_valid_tenant(tenant) => tenant.clone(),
            Some(_) => return Err(AuthError::InvalidTenant),
        };
        let subject = match claims.get("sub") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(sub)) => sub.clone(),
            Some(_) => return Err(AuthError::Malformed),
        };
        let scopes = match claims.get("scope") {
            None | Some(Value::Null) => Scopes::default(),
            Some(Value::String(scope)) => Scopes::parse(scope),
            Some(_) => return Err(AuthError::Malformed),
        };
        Ok(Principal {
            subject,
            tenant,
            scopes,
        })
    }
}

/// Whether `tenant` is a valid tenant name: `[A-Za-z0-9_-]`, 1 to [`MAX_TENANT_LEN`] characters.
pub fn is_valid_tenant(tenant: &str) -> bool {
    (1..=MAX_TENANT_LEN).contains(&tenant.len()) && tenant.bytes().all(scope::is_name_byte)
}

fn decode_b64(segment: &str) -> Result<Vec<u8>, AuthError> {
    B64_STRICT.decode(segment).map_err(|_| AuthError::Malformed)
}

/// A NumericDate claim (RFC 7519 §2): seconds, possibly fractional. `None` when absent or null.
fn numeric_date(value: Option<&Value>) -> Result<Option<i64>, AuthError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            let secs = n
                .as_i64()
                .or_else(|| n.as_u64().map(|_| i64::MAX))
                // `as` saturates, and JSON has no NaN.
                .or_else(|| n.as_f64().map(|f| f.floor() as i64))
                .ok_or(AuthError::Malformed)?;
            Ok(Some(secs))
        }
        Some(_) => Err(AuthError::Malformed),
    }
}

/// Client text echoed in an error: printable ASCII only, at most 32 characters.
fn sanitize(text: &str) -> String {
    text.chars()
        .take(32)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}
