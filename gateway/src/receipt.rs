//! Sealed receipts: what a client gets for each received message and hands back to ack it.
//!
//! The broker's receipt handle names a broker, a queue and an offset. Clients must not see those
//! (they would learn the cluster's layout) nor forge them (they could ack another tenant's
//! messages), and any gateway instance must accept a receipt any other instance wrote — the
//! gateway keeps no state. So the gateway seals the handle together with tenant, group and topic
//! under a key every instance shares (shared architecture doc, "Receipts"):
//!
//! ```text
//! receipt = base64url( version(1) | salt(16) | AES-256-GCM(body) | tag(16) )
//! ```
//!
//! Each receipt is encrypted under its own key, derived with HKDF-SHA256 from the shared key and
//! the random 128-bit salt (info `tern/receipt/v1`). With one fixed key and random 96-bit
//! nonces AES-GCM is only safe for about 2^32 messages per key (NIST SP 800-38D §8.3), which a
//! busy gateway fleet would issue within days; a fresh key per receipt has no such limit, so the
//! AEAD nonce can be a constant. The version byte is authenticated too (it is the AEAD's
//! associated data).
//!
//! Key rotation: the first key seals, every key opens. Roll a new key out at the front of every
//! gateway's list, then drop the old one once receipts sealed with it have expired.
//!
//! The body is a compact binary record: four length-prefixed strings (tenant, group, topic,
//! broker name), the queue id and offset as fixed-width big-endian integers, then the handle.
//! Within the field limits below a receipt is at most about 1,000 characters (ASCII, URL-safe,
//! no padding), under [`MAX_RECEIPT_LEN`].

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use rand::RngCore;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;

/// The longest receipt [`ReceiptSealer::open`] looks at.
pub const MAX_RECEIPT_LEN: usize = 1024;
/// The most keys a sealer holds (each one is tried when opening).
pub const MAX_KEYS: usize = 16;
/// Field limits that keep a receipt within [`MAX_RECEIPT_LEN`]: a tenant name ...
pub const MAX_TENANT_LEN: usize = 64;
/// ... a group, topic or broker name (a broker-side name is at most 127 characters) ...
pub const MAX_NAME_LEN: usize = 127;
/// ... and the broker's handle (the broker refuses longer ones too).
pub const MAX_HANDLE_LEN: usize = 256;

const VERSION: u8 = 1;
const SALT_LEN: usize = 16;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + SALT_LEN;
const HKDF_INFO: &[u8] = b"tern/receipt/v1";

/// Base64url without padding, and only its canonical form accepted, so each receipt has exactly
/// one spelling.
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

/// What a receipt carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptBody {
    pub tenant: String,
    pub group: String,
    pub topic: String,
    pub broker_name: String,
    pub queue_id: i32,
    pub queue_offset: i64,
    /// The broker's receipt handle (`POP_CK`).
    pub handle: String,
    /// Which delivery of the message this is (1 = the first): a nack without a delay waits
    /// what the group's retry policy gives for it.
    pub delivery_attempt: u32,
}

/// Why a receipt or a receipt key was refused. Safe to show clients (no key material).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    #[error("the receipt is longer than {MAX_RECEIPT_LEN} characters")]
    TooLong,
    #[error("the receipt is malformed")]
    Malformed,
    #[error("the receipt was not issued by this service or was altered")]
    Forged,
    #[error("the receipt belongs to another tenant, group or topic")]
    WrongScope,
    #[error("invalid receipt key: {0}")]
    InvalidKey(String),
    /// From [`ReceiptSealer::try_seal`]: a field is over its limit, so the receipt could exceed
    /// [`MAX_RECEIPT_LEN`].
    #[error("a receipt field is longer than its limit")]
    BodyTooLarge,
}

/// Seals and opens receipts. Immutable: share it in an `Arc`.
pub struct ReceiptSealer {
    /// One HKDF PRK per configured key; the first seals.
    keys: Vec<hkdf::Prk>,
}

impl std::fmt::Debug for ReceiptSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiptSealer")
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

/// A fresh random 32-byte key (from the thread-local CSPRNG, seeded by the OS).
pub fn generate_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    key
}

/// A key as 64 lowercase hex characters, the form [`ReceiptSealer::from_text_keys`] reads.
pub fn key_to_text(key: &[u8; 32]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

impl ReceiptSealer {
    /// A sealer with these keys: the first seals, every one opens. At least one and at most
    /// [`MAX_KEYS`] keys; an all-zero key (a placeholder left in a config) is refused.
    pub fn new(keys: Vec<[u8; 32]>) -> Result<ReceiptSealer, ReceiptError> {
        if keys.is_empty() {
            return Err(ReceiptError::InvalidKey("no receipt key configured".into()));
        }
        if keys.len() > MAX_KEYS {
            return Err(ReceiptError::InvalidKey(format!(
                "more than {MAX_KEYS} keys"
            )));
        }
        if let Some(i) = keys.iter().position(|k| k.iter().all(|b| *b == 0)) {
            return Err(ReceiptError::InvalidKey(format!("key #{i} is all zeros")));
        }
        // A uniformly random 32-byte key is a valid HKDF pseudorandom key as it is (RFC 5869
        // §3.3), so only the expand step runs per receipt.
        let keys = keys
            .iter()
            .map(|k| hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, k))
            .collect();
        Ok(ReceiptSealer { keys })
    }

    /// A sealer from keys written as text: 64 hex characters or base64 (standard or URL-safe,
    /// padded or not) of 32 bytes. Surrounding whitespace is ignored.
    pub fn from_text_keys(keys: &[String]) -> Result<ReceiptSealer, ReceiptError> {
        let parsed = keys
            .iter()
            .enumerate()
            .map(|(i, text)| {
                parse_key(text.trim()).ok_or_else(|| {
                    ReceiptError::InvalidKey(format!(
                        "key #{i}: expected 64 hex characters or base64 of 32 bytes"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        ReceiptSealer::new(parsed)
    }

    /// Seals `body` with the first key. Within the field limits ([`MAX_TENANT_LEN`],
    /// [`MAX_NAME_LEN`], [`MAX_HANDLE_LEN`]) the result is at most [`MAX_RECEIPT_LEN`]
    /// characters; a body over them is still sealed, but the receipt may be too long to open
    /// (use [`ReceiptSealer::try_seal`] to find out at once).
    pub fn seal(&self, body: &ReceiptBody) -> String {
        let mut plaintext = encode_body(body);
        let mut salt = [0u8; SALT_LEN];
        rand::rng().fill_bytes(&mut salt);
        let key = self.derive(0, &salt);
        // Sealing fails only for inputs of gigabytes; the body is bounded by what the broker and
        // the request parser accept.
        let tag = key
            .seal_in_place_separate_tag(nonce(), Aad::from([VERSION]), &mut plaintext)
            .expect("AES-GCM accepts any input below 64 GiB");
        let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
        out.push(VERSION);
        out.extend_from_slice(&salt);
        out.extend_from_slice(&plaintext);
        out.extend_from_slice(tag.as_ref());
        B64.encode(out)
    }

    /// Like [`ReceiptSealer::seal`], but refuses a body over the field limits, so the receipt is
    /// guaranteed to open.
    pub fn try_seal(&self, body: &ReceiptBody) -> Result<String, ReceiptError> {
        if body.tenant.len() > MAX_TENANT_LEN
            || body.group.len() > MAX_NAME_LEN
            || body.topic.len() > MAX_NAME_LEN
            || body.broker_name.len() > MAX_NAME_LEN
            || body.handle.len() > MAX_HANDLE_LEN
        {
            return Err(ReceiptError::BodyTooLarge);
        }
        Ok(self.seal(body))
    }

    /// Opens a receipt and checks it belongs to this tenant, group and topic.
    ///
    /// `Forged` when no key authenticates it (altered, made up, or sealed with a key this
    /// gateway no longer has); `WrongScope` when it is genuine but for another tenant, group or
    /// topic.
    pub fn open(
        &self,
        receipt: &str,
        tenant: &str,
        group: &str,
        topic: &str,
    ) -> Result<ReceiptBody, ReceiptError> {
        if receipt.len() > MAX_RECEIPT_LEN {
            return Err(ReceiptError::TooLong);
        }
        let bytes = B64.decode(receipt).map_err(|_| ReceiptError::Malformed)?;
        if bytes.len() < HEADER_LEN + TAG_LEN {
            return Err(ReceiptError::Malformed);
        }
        let (header, sealed) = bytes.split_at(HEADER_LEN);
        let (version, salt) = header.split_at(1);
        if version != [VERSION] {
            return Err(ReceiptError::Malformed);
        }
        let body = (0..self.keys.len())
            .find_map(|i| {
                let mut in_out = sealed.to_vec();
                let key = self.derive(i, salt);
                let plaintext = key
                    .open_in_place(nonce(), Aad::from([VERSION]), &mut in_out)
                    .ok()?;
                Some(decode_body(plaintext))
            })
            .ok_or(ReceiptError::Forged)?
            .ok_or(ReceiptError::Malformed)?;
        if body.tenant != tenant || body.group != group || body.topic != topic {
            return Err(ReceiptError::WrongScope);
        }
        Ok(body)
    }

    /// The AEAD key for one receipt: HKDF-Expand(key `index`, info || salt).
    fn derive(&self, index: usize, salt: &[u8]) -> LessSafeKey {
        let info = [HKDF_INFO, salt];
        let okm = self.keys[index]
            .expand(&info, &AES_256_GCM)
            .expect("HKDF-SHA256 can expand to 32 bytes");
        LessSafeKey::new(UnboundKey::from(okm))
    }
}

/// Every receipt has its own key, so one constant nonce is never reused under a key.
fn nonce() -> Nonce {
    Nonce::assume_unique_for_key([0u8; 12])
}

fn parse_key(text: &str) -> Option<[u8; 32]> {
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut key = [0u8; 32];
        for (i, pair) in text.as_bytes().chunks_exact(2).enumerate() {
            let hex = std::str::from_utf8(pair).ok()?;
            key[i] = u8::from_str_radix(hex, 16).ok()?;
        }
        return Some(key);
    }
    const INDIFFERENT: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, INDIFFERENT);
    const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, INDIFFERENT);
    let bytes = STANDARD
        .decode(text)
        .or_else(|_| URL_SAFE.decode(text))
        .ok()?;
    bytes.try_into().ok()
}

fn encode_body(body: &ReceiptBody) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        32 + body.tenant.len()
            + body.group.len()
            + body.topic.len()
            + body.broker_name.len()
            + body.handle.len(),
    );
    for text in [&body.tenant, &body.group, &body.topic, &body.broker_name] {
        put_str(&mut out, text);
    }
    out.extend_from_slice(&body.queue_id.to_be_bytes());
    out.extend_from_slice(&body.queue_offset.to_be_bytes());
    put_str(&mut out, &body.handle);
    out.extend_from_slice(&body.delivery_attempt.to_be_bytes());
    out
}

/// A string as its LEB128 length then its bytes (1 length byte up to 127, 2 up to 16,383).
fn put_str(out: &mut Vec<u8>, text: &str) {
    let mut len = text.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(text.as_bytes());
}

/// Decodes a body. Only authenticated plaintext gets here, so `None` means a bug or a format
/// this version does not know, never an attack.
fn decode_body(mut input: &[u8]) -> Option<ReceiptBody> {
    let tenant = take_str(&mut input)?;
    let group = take_str(&mut input)?;
    let topic = take_str(&mut input)?;
    let broker_name = take_str(&mut input)?;
    let queue_id = i32::from_be_bytes(take(&mut input, 4)?.try_into().ok()?);
    let queue_offset = i64::from_be_bytes(take(&mut input, 8)?.try_into().ok()?);
    let handle = take_str(&mut input)?;
    let delivery_attempt = u32::from_be_bytes(take(&mut input, 4)?.try_into().ok()?);
    input.is_empty().then_some(ReceiptBody {
        tenant,
        group,
        topic,
        broker_name,
        queue_id,
        queue_offset,
        handle,
        delivery_attempt,
    })
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if input.len() < n {
        return None;
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Some(head)
}

fn take_str(input: &mut &[u8]) -> Option<String> {
    let mut len = 0usize;
    for shift in [0, 7, 14, 21] {
        let byte = *take(input, 1)?.first()?;
        len |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            let bytes = take(input, len)?;
            return String::from_utf8(bytes.to_vec()).ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose;
    use proptest::prelude::*;

    fn body() -> ReceiptBody {
        ReceiptBody {
            tenant: "acme".into(),
            group: "billing".into(),
            topic: "orders".into(),
            broker_name: "broker-a".into(),
            queue_id: 3,
            queue_offset: 12_345,
            handle: "12345 1700000000000 30000 0 0 broker-a 3 12345".into(),
            delivery_attempt: 1,
        }
    }

    fn largest() -> ReceiptBody {
        ReceiptBody {
            tenant: "t".repeat(MAX_TENANT_LEN),
            group: "g".repeat(MAX_NAME_LEN),
            topic: "o".repeat(MAX_NAME_LEN),
            broker_name: "b".repeat(MAX_NAME_LEN),
            queue_id: i32::MIN,
            queue_offset: i64::MAX,
            handle: "h".repeat(MAX_HANDLE_LEN),
            delivery_attempt: u32::MAX,
        }
    }

    fn sealer() -> ReceiptSealer {
        ReceiptSealer::new(vec![[7u8; 32]]).unwrap()
    }

    fn open(s: &ReceiptSealer, receipt: &str) -> Result<ReceiptBody, ReceiptError> {
        s.open(receipt, "acme", "billing", "orders")
    }

    #[test]
    fn round_trip() {
        let s = sealer();
        let receipt = s.seal(&body());
        assert_eq!(open(&s, &receipt), Ok(body()));
        assert!(
            receipt
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert!(!receipt.contains("broker"), "the handle must not show");
        // A fresh salt every time: equal bodies give unrelated receipts.
        assert_ne!(s.seal(&body()), receipt);
    }

    #[test]
    fn largest_body_fits_the_limit() {
        let s = sealer();
        let receipt = s.try_seal(&largest()).unwrap();
        assert!(receipt.len() <= MAX_RECEIPT_LEN, "{}", receipt.len());
        let b = largest();
        assert_eq!(s.open(&receipt, &b.tenant, &b.group, &b.topic), Ok(b));
    }

    #[test]
    fn oversized_bodies() {
        let s = sealer();
        let mut big = largest();
        big.handle.push('x');
        assert_eq!(s.try_seal(&big), Err(ReceiptError::BodyTooLarge));
        let mut big = body();
        big.handle = "h".repeat(2000);
        let receipt = s.seal(&big);
        assert_eq!(open(&s, &receipt), Err(ReceiptError::TooLong));
        // A small excess still opens: seal never produces something open would misread.
        let mut over = body();
        over.handle = "h".repeat(MAX_HANDLE_LEN + 10);
        assert_eq!(open(&s, &s.seal(&over)), Ok(over));
        for field in 0..4 {
            let mut b = body();
            let name = "n".repeat(MAX_NAME_LEN + 1);
            match field {
                0 => b.tenant = "t".repeat(MAX_TENANT_LEN + 1),
                1 => b.group = name,
                2 => b.topic = name,
                _ => b.broker_name = name,
            }
            assert_eq!(
                s.try_seal(&b),
                Err(ReceiptError::BodyTooLarge),
                "field {field}"
            );
        }
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let s = sealer();
        let bytes = B64.decode(s.seal(&body())).unwrap();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut altered = bytes.clone();
                altered[i] ^= 1 << bit;
                let result = open(&s, &B64.encode(&altered));
                // The version byte is read before any key; every other byte is authenticated.
                let expected = if i == 0 {
                    ReceiptError::Malformed
                } else {
                    ReceiptError::Forged
                };
                assert_eq!(result, Err(expected), "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn truncated_and_extended_receipts_are_refused() {
        let s = sealer();
        let bytes = B64.decode(s.seal(&body())).unwrap();
        for len in 0..bytes.len() {
            let result = open(&s, &B64.encode(&bytes[..len]));
            assert!(
                matches!(result, Err(ReceiptError::Malformed | ReceiptError::Forged)),
                "{len}: {result:?}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(open(&s, &B64.encode(&longer)), Err(ReceiptError::Forged));
    }

    #[test]
    fn other_tenant_group_or_topic_is_refused() {
        let s = sealer();
        let receipt = s.seal(&body());
        assert_eq!(
            s.open(&receipt, "evil", "billing", "orders"),
            Err(ReceiptError::WrongScope)
        );
        assert_eq!(
            s.open(&receipt, "acme", "other", "orders"),
            Err(ReceiptError::WrongScope)
        );
        assert_eq!(
            s.open(&receipt, "acme", "billing", "payments"),
            Err(ReceiptError::WrongScope)
        );
        assert_eq!(
            s.open(&receipt, "ACME", "billing", "orders"),
            Err(ReceiptError::WrongScope)
        );
        assert_eq!(s.open(&receipt, "", "", ""), Err(ReceiptError::WrongScope));
    }

    #[test]
    fn any_gateway_with_the_key_opens_and_rotation_keeps_old_receipts() {
        let (old, new) = (generate_key(), generate_key());
        let before = ReceiptSealer::new(vec![old]).unwrap();
        let other_instance = ReceiptSealer::new(vec![old]).unwrap();
        let receipt = before.seal(&body());
        assert_eq!(open(&other_instance, &receipt), Ok(body()));

        let rotated = ReceiptSealer::new(vec![new, old]).unwrap();
        assert_eq!(
            open(&rotated, &receipt),
            Ok(body()),
            "sealed before the rotation"
        );
        let fresh = rotated.seal(&body());
        assert_eq!(open(&rotated, &fresh), Ok(body()));
        assert_eq!(
            open(&ReceiptSealer::new(vec![new]).unwrap(), &fresh),
            Ok(body())
        );
        assert_eq!(
            open(&before, &fresh),
            Err(ReceiptError::Forged),
            "sealed with the new key"
        );

        let retired = ReceiptSealer::new(vec![new]).unwrap();
        assert_eq!(open(&retired, &receipt), Err(ReceiptError::Forged));
    }

    #[test]
    fn garbage_is_refused() {
        let s = sealer();
        for bad in ["", "a", "====", "abc=", "not base64!", "AAAA", "é", " "] {
            let result = open(&s, bad);
            assert!(
                matches!(result, Err(ReceiptError::Malformed)),
                "{bad:?}: {result:?}"
            );
        }
        // Right length, version and alphabet, but made up.
        let mut fake = vec![VERSION];
        fake.extend_from_slice(&[0x41; 80]);
        assert_eq!(open(&s, &B64.encode(&fake)), Err(ReceiptError::Forged));
        assert_eq!(
            open(&s, &"A".repeat(MAX_RECEIPT_LEN + 1)),
            Err(ReceiptError::TooLong)
        );
        // Padding and the standard alphabet are not the canonical spelling.
        let receipt = s.seal(&body());
        assert_eq!(
            open(&s, &format!("{receipt}=")),
            Err(ReceiptError::Malformed)
        );
        let standard = general_purpose::STANDARD.encode(B64.decode(&receipt).unwrap());
        if standard.contains(['+', '/', '=']) {
            assert_eq!(open(&s, &standard), Err(ReceiptError::Malformed));
        }
    }

    #[test]
    fn text_keys() {
        let key = generate_key();
        let hex = key_to_text(&key);
        assert_eq!(hex.len(), 64);
        let forms = [
            hex.clone(),
            hex.to_uppercase(),
            format!("  {hex}\n"),
            general_purpose::STANDARD.encode(key),
            general_purpose::STANDARD_NO_PAD.encode(key),
            general_purpose::URL_SAFE.encode(key),
            general_purpose::URL_SAFE_NO_PAD.encode(key),
        ];
        let reference = ReceiptSealer::new(vec![key]).unwrap();
        let receipt = reference.seal(&body());
        for form in &forms {
            let s = ReceiptSealer::from_text_keys(std::slice::from_ref(form)).unwrap();
            assert_eq!(open(&s, &receipt), Ok(body()), "{form}");
        }
        let bad = [
            String::new(),
            "zz".repeat(32),
            hex[..62].to_string(),
            format!("{hex}00"),
            general_purpose::STANDARD.encode([1u8; 31]),
            general_purpose::STANDARD.encode([1u8; 33]),
            "not a key".into(),
        ];
        for text in &bad {
            let err = ReceiptSealer::from_text_keys(&[hex.clone(), text.clone()]).unwrap_err();
            let ReceiptError::InvalidKey(message) = &err else {
                panic!("{err:?}")
            };
            assert!(message.starts_with("key #1"), "{message}");
            assert!(!message.contains(&hex), "key material in {message}");
        }
        assert!(matches!(
            ReceiptSealer::from_text_keys(&[]),
            Err(ReceiptError::InvalidKey(_))
        ));
        let zero = "0".repeat(64);
        assert!(matches!(
            ReceiptSealer::from_text_keys(&[zero]),
            Err(ReceiptError::InvalidKey(_))
        ));
        let many = vec![hex; MAX_KEYS + 1];
        assert!(matches!(
            ReceiptSealer::from_text_keys(&many),
            Err(ReceiptError::InvalidKey(_))
        ));
    }

    #[test]
    fn generated_keys_differ() {
        let (a, b) = (generate_key(), generate_key());
        assert_ne!(a, b);
        assert_ne!(a, [0; 32]);
    }

    #[test]
    fn sealer_is_shareable_and_hides_keys() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<ReceiptSealer>();
        let key = [0x5a; 32];
        let debug = format!("{:?}", ReceiptSealer::new(vec![key]).unwrap());
        assert!(
            !debug.contains(&key_to_text(&key)) && !debug.contains("90"),
            "{debug}"
        );
    }

    #[test]
    fn body_encoding_edge_cases() {
        let mut b = body();
        b.handle = "é∂ unicode".into();
        b.tenant = String::new();
        let encoded = encode_body(&b);
        assert_eq!(decode_body(&encoded), Some(b));
        assert_eq!(decode_body(&encoded[..encoded.len() - 1]), None);
        assert_eq!(decode_body(&[encoded.as_slice(), &[0]].concat()), None);
        assert_eq!(decode_body(&[0xff, 0xff, 0xff, 0xff, 0x7f]), None);
        assert_eq!(decode_body(&[0x80, 0x80, 0x80, 0x80, 0x80]), None);
        assert_eq!(decode_body(&[]), None);
        let mut long = Vec::new();
        put_str(&mut long, &"x".repeat(300));
        assert_eq!(&long[..2], &[0xac, 0x02]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn open_never_panics_on_arbitrary_text(text in ".{0,1100}") {
            let s = sealer();
            prop_assert!(s.open(&text, "acme", "billing", "orders").is_err());
        }

        #[test]
        fn open_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..800)) {
            let s = sealer();
            prop_assert!(open(&s, &B64.encode(&bytes)).is_err());
            let mut versioned = bytes.clone();
            versioned.insert(0, VERSION);
            prop_assert!(open(&s, &B64.encode(&versioned)).is_err());
        }

        #[test]
        fn bodies_within_limits_round_trip(
            tenant in "[A-Za-z0-9_-]{1,64}",
            group in "[A-Za-z0-9_-]{1,127}",
            topic in "[A-Za-z0-9_-]{1,127}",
            broker_name in "[!-~]{1,127}",
            queue_id in any::<i32>(),
            queue_offset in any::<i64>(),
            handle in "[ -~]{0,256}",
        ) {
            let s = sealer();
            let b = ReceiptBody { tenant, group, topic, broker_name, queue_id, queue_offset, handle, delivery_attempt: 3 };
            let receipt = s.try_seal(&b).unwrap();
            prop_assert!(receipt.len() <= MAX_RECEIPT_LEN);
            prop_assert_eq!(s.open(&receipt, &b.tenant, &b.group, &b.topic), Ok(b));
        }
    }
}
