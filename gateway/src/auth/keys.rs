//! Loading the keys tokens are checked with: a shared secret, PEM public keys and a JWKS file.
//!
//! Every key is bound to exactly one algorithm when it is loaded (its [`KeyKind`]), and a token is
//! only ever checked against keys of the kind its `alg` names. That is what stops the classic
//! confusion attacks: an RSA public key is never handed to HMAC as a secret, and `alg: none`
//! names no kind at all.
//!
//! Everything is checked here, once, at start-up, so that a bad file fails the start rather than
//! every request: RSA moduli must be 2048 to 4096 bits (4096 is the most the RSA backend accepts),
//! EC keys must be P-256 points, Ed25519 keys 32 bytes, HMAC secrets at least 32 bytes (RFC 7518
//! §3.2: a key at least as long as the hash output).

use std::fs::File;
use std::io::Read;
use std::path::Path;

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};
use serde::Deserialize;

use super::{AuthConfig, AuthConfigError};

/// The most keys a verifier holds in all (secret, PEM files and JWKS entries together). A token
/// without `kid` is tried against every key of its kind, so this also bounds the work one token
/// can cause.
pub const MAX_KEYS: usize = 64;

/// The largest secret or PEM file read.
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// The largest JWKS file read.
const MAX_JWKS_FILE_BYTES: u64 = 1024 * 1024;

/// The shortest HMAC secret accepted, in bytes (RFC 7518 §3.2 for HS256).
pub const MIN_HMAC_SECRET_BYTES: usize = 32;

const MIN_RSA_BITS: usize = 2048;
const MAX_RSA_BITS: usize = 4096;

/// Base64url for key material in configuration: padding tolerated, as producers differ.
const B64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The kind of a key, which fixes the one algorithm it verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    /// HS256: HMAC-SHA256 with a shared secret.
    Hmac,
    /// RS256: RSASSA-PKCS1-v1_5 with SHA-256.
    Rsa,
    /// ES256: ECDSA on P-256 with SHA-256.
    EcP256,
    /// EdDSA: Ed25519.
    Ed25519,
}

impl KeyKind {
    pub(crate) const ALL: [KeyKind; 4] = [
        KeyKind::Hmac,
        KeyKind::Rsa,
        KeyKind::EcP256,
        KeyKind::Ed25519,
    ];

    /// The kind for a JOSE `alg` name; only the four algorithms Tern accepts have one.
    pub(crate) fn from_alg(alg: &str) -> Option<KeyKind> {
        KeyKind::ALL.into_iter().find(|k| k.alg_name() == alg)
    }

    pub(crate) fn alg_name(self) -> &'static str {
        match self {
            KeyKind::Hmac => "HS256",
            KeyKind::Rsa => "RS256",
            KeyKind::EcP256 => "ES256",
            KeyKind::Ed25519 => "EdDSA",
        }
    }

    pub(crate) fn algorithm(self) -> Algorithm {
        match self {
            KeyKind::Hmac => Algorithm::HS256,
            KeyKind::Rsa => Algorithm::RS256,
            KeyKind::EcP256 => Algorithm::ES256,
            KeyKind::Ed25519 => Algorithm::EdDSA,
        }
    }
}

/// One verification key.
pub(crate) struct Key {
    pub(crate) kind: KeyKind,
    /// The JWKS `kid`; keys from the secret or PEM files have none.
    pub(crate) kid: Option<String>,
    pub(crate) decoding: DecodingKey,
}

impl Key {
    /// Checks `signature` over `message`. Any failure (including one the backend reports as an
    /// error, such as a signature of the wrong length) is simply "not verified".
    pub(crate) fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        // The RustCrypto provider is named directly rather than through jsonwebtoken's process
        // default, so another crate enabling a second provider cannot change or break this.
        match (DEFAULT_PROVIDER.verifier_factory)(&self.kind.algorithm(), &self.decoding) {
            Ok(verifier) => verifier.verify(message, &signature.to_vec()).is_ok(),
            Err(_) => false,
        }
    }
}

/// Loads every key the configuration names. `allowed` is the configured algorithm allowlist:
/// an explicitly configured secret or PEM key of another kind is a configuration error, while
/// JWKS entries of other kinds are skipped (a provider's JWKS often carries keys for others).
pub(crate) fn load(config: &AuthConfig, allowed: &[KeyKind]) -> Result<Vec<Key>, AuthConfigError> {
    let mut keys = Vec::new();

    let secret = match (&config.hs256_secret, &config.hs256_secret_file) {
        (Some(_), Some(_)) => {
            return Err(AuthConfigError::Invalid(
                "set hs256_secret or hs256_secret_file, not both".into(),
            ));
        }
        (Some(secret), None) => Some(("hs256_secret".to_string(), secret.as_bytes().to_vec())),
        (None, Some(path)) => {
            let mut bytes = read_limited(path, MAX_KEY_FILE_BYTES)?;
            // Files written by editors and `echo` end with a newline that is not part of the key.
            while matches!(bytes.last(), Some(b'\n' | b'\r')) {
                bytes.pop();
            }
            Some((path.display().to_string(), bytes))
        }
        (None, None) => None,
    };
    if let Some((origin, secret)) = secret {
        require_allowed(KeyKind::Hmac, allowed, &origin)?;
        keys.push(Key {
            kind: KeyKind::Hmac,
            kid: None,
            decoding: hmac_key(&secret).map_err(|reason| invalid(&origin, reason))?,
        });
    }

    for path in &config.public_key_files {
        let origin = path.display().to_string();
        let pem = read_limited(path, MAX_KEY_FILE_BYTES)?;
        let (kind, decoding) = pem_key(&pem).map_err(|reason| invalid(&origin, reason))?;
        require_allowed(kind, allowed, &origin)?;
        keys.push(Key {
            kind,
            kid: None,
            decoding,
        });
    }

    if let Some(path) = &config.jwks_file {
        let origin = path.display().to_string();
        let text = read_limited(path, MAX_JWKS_FILE_BYTES)?;
        let set: JwkSet = serde_json::from_slice(&text)
            .map_err(|e| invalid(&origin, format!("not a JWKS document: {e}")))?;
        if set.keys.len() > MAX_KEYS {
            return Err(invalid(&origin, format!("more than {MAX_KEYS} keys")));
        }
        for (i, jwk) in set.keys.iter().enumerate() {
            let key =
                jwk_key(jwk).map_err(|reason| invalid(&origin, format!("key #{i}: {reason}")))?;
            if let Some(key) = key.filter(|k| allowed.contains(&k.kind)) {
                keys.push(key);
            }
        }
    }

    if keys.len() > MAX_KEYS {
        return Err(AuthConfigError::Invalid(format!(
            "more than {MAX_KEYS} keys configured"
        )));
    }
    Ok(keys)
}

fn invalid(origin: &str, reason: impl Into<String>) -> AuthConfigError {
    AuthConfigError::InvalidKey {
        origin: origin.to_string(),
        reason: reason.into(),
    }
}

fn require_allowed(
    kind: KeyKind,
    allowed: &[KeyKind],
    origin: &str,
) -> Result<(), AuthConfigError> {
    if allowed.contains(&kind) {
        Ok(())
    } else {
        Err(invalid(
            origin,
            format!(
                "is a {} key but {} is not in algorithms",
                kind.alg_name(),
                kind.alg_name()
            ),
        ))
    }
}

fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, AuthConfigError> {
    let read = || -> std::io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        File::open(path)?.take(limit + 1).read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    let bytes = read().map_err(|source| AuthConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if bytes.len() as u64 > limit {
        return Err(invalid(
            &path.display().to_string(),
            format!("file is larger than {limit} bytes"),
        ));
    }
    Ok(bytes)
}

fn hmac_key(secret: &[u8]) -> Result<DecodingKey, String> {
    if secret.len() < MIN_HMAC_SECRET_BYTES {
        return Err(format!(
            "HS256 secret is {} bytes; at least {MIN_HMAC_SECRET_BYTES} are required",
            secret.len()
        ));
    }
    Ok(DecodingKey::from_secret(secret))
}

/// Reads one PEM public key and tells its kind from the key itself (its algorithm OID).
fn pem_key(pem: &[u8]) -> Result<(KeyKind, DecodingKey), String> {
    let text = std::str::from_utf8(pem).map_err(|_| "not a PEM file (not UTF-8)".to_string())?;
    let mut labels = text.match_indices("-----BEGIN ").map(|(at, begin)| {
        let rest = &text[at + begin.len()..];
        rest.split_once("-----").map_or(rest, |(label, _)| label)
    });
    let label = labels.next().ok_or("not a PEM file (no BEGIN line)")?;
    if labels.next().is_some() {
        return Err("holds more than one PEM block; give one key per file".into());
    }
    let decoding = match label {
        "PUBLIC KEY" | "RSA PUBLIC KEY" => DecodingKey::from_rsa_pem(pem)
            .or_else(|_| DecodingKey::from_ec_pem(pem))
            .or_else(|_| DecodingKey::from_ed_pem(pem))
            .map_err(|_| "not an RSA, EC or Ed25519 public key".to_string())?,
        label if label.contains("PRIVATE") => {
            return Err("is a private key; configure the public key".into());
        }
        "CERTIFICATE" => {
            return Err(
                "is a certificate; extract its key with `openssl x509 -pubkey -noout`".into(),
            );
        }
        _ => return Err(format!("unsupported PEM block {label:?}")),
    };
    let DecodingKeyKind::SecretOrDer(bytes) = decoding.kind() else {
        return Err("unexpected key encoding".into());
    };
    let kind = match decoding.family() {
        jsonwebtoken::AlgorithmFamily::Rsa => {
            let (n, e) = rsa_public_key_der(bytes).ok_or("malformed RSA public key")?;
            check_rsa(n, e)?;
            KeyKind::Rsa
        }
        jsonwebtoken::AlgorithmFamily::Ec => {
            check_ec_point(bytes)?;
            KeyKind::EcP256
        }
        jsonwebtoken::AlgorithmFamily::Ed => {
            check_ed25519(bytes)?;
            KeyKind::Ed25519
        }
        jsonwebtoken::AlgorithmFamily::Hmac => return Err("not a public key".into()),
    };
    check_backend_accepts(kind, &decoding)?;
    Ok((kind, decoding))
}

/// Builds the backend's verifier once, so that a key it cannot use fails the start.
fn check_backend_accepts(kind: KeyKind, key: &DecodingKey) -> Result<(), String> {
    (DEFAULT_PROVIDER.verifier_factory)(&kind.algorithm(), key)
        .map(drop)
        .map_err(|_| format!("not a usable {} key", kind.alg_name()))
}

/// An uncompressed P-256 point (`04 || x || y`); a P-384 key (97 bytes) is refused here.
fn check_ec_point(point: &[u8]) -> Result<(), String> {
    if point.len() != 65 || point[0] != 0x04 {
        return Err(
            "EC key is not an uncompressed P-256 point (only P-256 / ES256 is supported)".into(),
        );
    }
    Ok(())
}

fn check_ed25519(key: &[u8]) -> Result<(), String> {
    if key.len() != 32 {
        return Err("Ed25519 public key must be 32 bytes".into());
    }
    Ok(())
}

fn strip_leading_zeros(mut bytes: &[u8]) -> &[u8] {
    while let [0, rest @ ..] = bytes {
        bytes = rest;
    }
    bytes
}

/// Checks the modulus size and the public exponent (odd, 3 ..= 2^33-1, as the RSA backend wants).
fn check_rsa(n: &[u8], e: &[u8]) -> Result<(), String> {
    let n = strip_leading_zeros(n);
    let bits = match n.first() {
        Some(first) => (n.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
        None => 0,
    };
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(format!(
            "RSA modulus is {bits} bits; {MIN_RSA_BITS} to {MAX_RSA_BITS} are supported"
        ));
    }
    let e = strip_leading_zeros(e);
    let exponent = if e.len() <= 8 {
        e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
    } else {
        u64::MAX
    };
    if !(3..=(1 << 33) - 1).contains(&exponent) || exponent % 2 == 0 {
        return Err("RSA public exponent is not usable".into());
    }
    Ok(())
}

/// Splits a PKCS#1 `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }` DER.
fn rsa_public_key_der(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (seq, rest) = der_tlv(der, 0x30)?;
    if !rest.is_empty() {
        return None;
    }
    let (n, seq) = der_tlv(seq, 0x02)?;
    let (e, seq) = der_tlv(seq, 0x02)?;
    seq.is_empty().then_some((n, e))
}

/// Reads one DER element with the given tag: its contents and what follows it.
fn der_tlv(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&t, rest) = input.split_first()?;
    if t != tag {
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 2 || rest.len() < count {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        rest = &rest[count..];
        len
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

/// The JWK members Tern reads (RFC 7517/7518); others (`x5c`, `x5t`, …) are ignored.
#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
    k: Option<String>,
}

/// Turns one JWK into a key. `Ok(None)`: a key Tern does not use (encryption keys, other
/// algorithms or curves), skipped. `Err`: a key of a supported kind that is broken.
fn jwk_key(jwk: &Jwk) -> Result<Option<Key>, String> {
    if jwk.use_.as_deref().is_some_and(|u| u != "sig")
        || jwk
            .key_ops
            .as_ref()
            .is_some_and(|ops| !ops.iter().any(|op| op == "verify"))
    {
        return Ok(None);
    }
    let kind = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
        ("oct", _) => KeyKind::Hmac,
        ("RSA", _) => KeyKind::Rsa,
        ("EC", Some("P-256")) => KeyKind::EcP256,
        ("OKP", Some("Ed25519")) => KeyKind::Ed25519,
        _ => return Ok(None),
    };
    if jwk.alg.as_deref().is_some_and(|alg| alg != kind.alg_name()) {
        return Ok(None);
    }
    let field = |name: &str, value: &Option<String>| -> Result<Vec<u8>, String> {
        let value = value
            .as_deref()
            .ok_or_else(|| format!("{} key without {name:?}", kind.alg_name()))?;
        B64_LENIENT
            .decode(value)
            .map_err(|_| format!("{name:?} is not base64url"))
    };
    let decoding = match kind {
        KeyKind::Hmac => hmac_key(&field("k", &jwk.k)?)?,
        KeyKind::Rsa => {
            let (n, e) = (field("n", &jwk.n)?, field("e", &jwk.e)?);
            check_rsa(&n, &e)?;
            DecodingKey::from_rsa_raw_components(strip_leading_zeros(&n), strip_leading_zeros(&e))
        }
        KeyKind::EcP256 => {
            let (x, y) = (field("x", &jwk.x)?, field("y", &jwk.y)?);
            if x.len() != 32 || y.len() != 32 {
                return Err("P-256 coordinates must be 32 bytes each".into());
            }
            let point = [&[0x04][..], &x, &y].concat();
            DecodingKey::from_ec_der(&point)
        }
        KeyKind::Ed25519 => {
            let x = field("x", &jwk.x)?;
            check_ed25519(&x)?;
            DecodingKey::from_ed_der(&x)
        }
    };
    check_backend_accepts(kind, &decoding)?;
    Ok(Some(Key {
        kind,
        kid: jwk.kid.clone(),
        decoding,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_reader_refuses_truncated_and_trailing_input() {
        assert_eq!(
            der_tlv(&[0x02, 0x01, 0x05], 0x02),
            Some((&[5u8][..], &[][..]))
        );
        assert_eq!(der_tlv(&[0x02, 0x02, 0x05], 0x02), None);
        assert_eq!(der_tlv(&[0x02], 0x02), None);
        assert_eq!(der_tlv(&[], 0x02), None);
        assert_eq!(der_tlv(&[0x30, 0x01, 0x05], 0x02), None);
        assert_eq!(der_tlv(&[0x02, 0x80], 0x02), None);
        assert_eq!(der_tlv(&[0x02, 0x83, 0, 0, 1, 0], 0x02), None);
        assert_eq!(
            der_tlv(&[0x02, 0x81, 0x01, 0x07], 0x02),
            Some((&[7u8][..], &[][..]))
        );
        assert_eq!(
            rsa_public_key_der(&[0x30, 0x06, 0x02, 0x01, 0x05, 0x02, 0x01, 0x03]),
            Some((&[5u8][..], &[3u8][..]))
        );
        assert_eq!(
            rsa_public_key_der(&[0x30, 0x06, 0x02, 0x01, 0x05, 0x02, 0x01, 0x03, 0]),
            None
        );
    }

    #[test]
    fn rsa_size_and_exponent_limits() {
        let n2048 = [&[0u8][..], &[0x80], &[0; 255]].concat();
        assert!(check_rsa(&n2048, &[1, 0, 1]).is_ok());
        assert!(check_rsa(&n2048[..200], &[1, 0, 1]).is_err(), "too small");
        assert!(check_rsa(&[0xff; 513], &[1, 0, 1]).is_err(), "too large");
        assert!(check_rsa(&[0xff; 512], &[1, 0, 1]).is_ok());
        assert!(check_rsa(&n2048, &[1]).is_err());
        assert!(check_rsa(&n2048, &[4]).is_err());
        assert!(check_rsa(&n2048, &[]).is_err());
        assert!(check_rsa(&n2048, &[3]).is_ok());
        assert!(check_rsa(&n2048, &[0xff; 9]).is_err());
        assert!(check_rsa(&[], &[3]).is_err());
    }

    #[test]
    fn alg_names_map_to_exactly_four_kinds() {
        for kind in KeyKind::ALL {
            assert_eq!(KeyKind::from_alg(kind.alg_name()), Some(kind));
        }
        for alg in [
            "none", "None", "hs256", "HS384", "RS512", "PS256", "ES384", "", "EDDSA",
        ] {
            assert_eq!(KeyKind::from_alg(alg), None, "{alg}");
        }
    }
}
