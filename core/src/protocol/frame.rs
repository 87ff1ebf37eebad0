//! Frame codec: `[length i32][serializeType << 24 | headerLength][header][body]`.
//!
//! `length` counts everything after itself. Every size is checked before anything is allocated
//! ([`MAX_FRAME_BYTES`] and friends), so a hostile length prefix costs the peer its connection and
//! costs us nothing. Both header encodings of reference §7 are supported: JSON (RocketMQ's default)
//! and the compact ROCKETMQ binary layout. A response is encoded the way its request was.

use std::collections::HashMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use super::command::{ExtFields, LanguageCode, RemotingCommand, SerializeType};

/// Largest frame accepted or sent, counted like the length prefix (RocketMQ's 16 MiB).
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
/// Largest header (the header-length field has 24 bits; RocketMQ peers never come close).
pub const MAX_HEADER_BYTES: usize = 1024 * 1024;
/// Most extension fields one header may carry.
pub const MAX_EXT_FIELDS: usize = 1024;

/// A frame that cannot be decoded or encoded. Decoding errors close the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame length {0} is outside 4..={MAX_FRAME_BYTES}")]
    FrameLength(i64),
    #[error("header length {header} does not fit frame length {frame}")]
    HeaderLength { header: usize, frame: usize },
    #[error("unknown header serialize type {0}")]
    SerializeType(u8),
    #[error("malformed JSON header: {0}")]
    Json(String),
    #[error("malformed binary header: {0}")]
    Binary(&'static str),
    #[error("frame of {0} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")]
    TooLarge(usize),
}

/// Decodes one frame from the front of `buf`, or returns `Ok(None)` when more bytes are needed.
pub fn decode_frame(buf: &mut BytesMut) -> Result<Option<RemotingCommand>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let length = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if length < 4 || length as usize > MAX_FRAME_BYTES {
        return Err(FrameError::FrameLength(length as i64));
    }
    let length = length as usize;
    if buf.len() < 4 + length {
        buf.reserve(4 + length - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    let mut frame = buf.split_to(length).freeze();
    let mark = frame.get_u32();
    let serialize_code = (mark >> 24) as u8;
    let header_len = (mark & 0x00FF_FFFF) as usize;
    if header_len > length - 4 || header_len > MAX_HEADER_BYTES {
        return Err(FrameError::HeaderLength {
            header: header_len,
            frame: length,
        });
    }
    let serialize_type = SerializeType::from_code(serialize_code)
        .ok_or(FrameError::SerializeType(serialize_code))?;
    let header = frame.split_to(header_len);
    let mut command = match serialize_type {
        SerializeType::Json => decode_json_header(&header)?,
        SerializeType::RocketMq => decode_binary_header(header)?,
    };
    command.serialize_type = serialize_type;
    command.body = frame;
    Ok(Some(command))
}

/// Encodes `command` into one frame.
pub fn encode_frame(command: &RemotingCommand) -> Result<Bytes, FrameError> {
    let header = match command.serialize_type {
        SerializeType::Json => encode_json_header(command),
        SerializeType::RocketMq => encode_binary_header(command)?,
    };
    let length = 4 + header.len() + command.body.len();
    if length > MAX_FRAME_BYTES || header.len() > MAX_HEADER_BYTES {
        return Err(FrameError::TooLarge(length));
    }
    let mut out = BytesMut::with_capacity(4 + length);
    out.put_i32(length as i32);
    out.put_u32((u32::from(command.serialize_type.code()) << 24) | header.len() as u32);
    out.put_slice(&header);
    out.put_slice(&command.body);
    Ok(out.freeze())
}

/// The JSON header as written: borrowed fields, no intermediate `Value` tree.
#[derive(Serialize)]
struct JsonHeaderOut<'a> {
    code: i32,
    language: &'static str,
    version: i32,
    opaque: i32,
    flag: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    remark: Option<&'a str>,
    #[serde(rename = "extFields", skip_serializing_if = "HashMap::is_empty")]
    ext_fields: &'a ExtFields,
    #[serde(rename = "serializeTypeCurrentRPC")]
    serialize_type_current_rpc: &'static str,
}

/// The JSON header as read. Every field but `code` may be missing or null (peers differ).
#[derive(Deserialize)]
struct JsonHeaderIn {
    code: i32,
    #[serde(default)]
    language: Option<LanguageField>,
    #[serde(default)]
    version: Option<i32>,
    #[serde(default)]
    opaque: Option<i32>,
    #[serde(default)]
    flag: Option<i32>,
    #[serde(default)]
    remark: Option<String>,
    #[serde(default, rename = "extFields")]
    ext_fields: Option<ExtMap>,
}

/// `extFields` decoded straight into [`ExtFields`]: nulls dropped, at most [`MAX_EXT_FIELDS`]
/// entries, the map sized up front (growing it showed in profiles).
struct ExtMap(ExtFields);

impl<'de> Deserialize<'de> for ExtMap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ExtMap;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of string values")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<ExtMap, A::Error> {
                let hint = map.size_hint().unwrap_or(16).min(MAX_EXT_FIELDS);
                let mut fields = ExtFields::with_capacity_and_hasher(hint, Default::default());
                while let Some((key, value)) = map.next_entry::<String, ExtValue>()? {
                    if fields.len() >= MAX_EXT_FIELDS {
                        return Err(serde::de::Error::custom(format!(
                            "more than {MAX_EXT_FIELDS} extFields"
                        )));
                    }
                    if let Some(value) = value.0 {
                        fields.insert(key, value);
                    }
                }
                Ok(ExtMap(fields))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<ExtMap, E> {
                Ok(ExtMap(ExtFields::default()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// `language` by name (RocketMQ) or by ordinal (tolerated).
#[derive(Deserialize)]
#[serde(untagged)]
enum LanguageField {
    Name(String),
    Code(u64),
}

/// An `extFields` value: a string in Java's `HashMap<String, String>`; numbers and booleans from
/// other peers are kept as their JSON text; null means absent.
struct ExtValue(Option<String>);

impl<'de> Deserialize<'de> for ExtValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ExtValue;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string, number, boolean or null")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ExtValue, E> {
                Ok(ExtValue(Some(v.to_string())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<ExtValue, E> {
                Ok(ExtValue(Some(v)))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ExtValue, E> {
                Ok(ExtValue(Some(v.to_string())))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ExtValue, E> {
                Ok(ExtValue(Some(v.to_string())))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<ExtValue, E> {
                Ok(ExtValue(Some(v.to_string())))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<ExtValue, E> {
                Ok(ExtValue(Some(v.to_string())))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<ExtValue, E> {
                Ok(ExtValue(None))
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<ExtValue, E> {
                Ok(ExtValue(None))
            }
        }
        d.deserialize_any(Visitor)
    }
}

fn encode_json_header(command: &RemotingCommand) -> Vec<u8> {
    let header = JsonHeaderOut {
        code: command.code,
        language: command.language.name(),
        version: command.version,
        opaque: command.opaque,
        flag: command.flag,
        remark: command.remark.as_deref(),
        ext_fields: &command.ext_fields,
        serialize_type_current_rpc: "JSON",
    };
    let mut out = Vec::with_capacity(128 + command.ext_fields.len() * 32);
    serde_json::to_writer(&mut out, &header).expect("a header always serializes");
    out
}

fn decode_json_header(header: &[u8]) -> Result<RemotingCommand, FrameError> {
    let parsed: JsonHeaderIn =
        serde_json::from_slice(header).map_err(|e| FrameError::Json(e.to_string()))?;
    let language = match parsed.language {
        Some(LanguageField::Name(name)) => LanguageCode::from_name(&name),
        Some(LanguageField::Code(code)) => LanguageCode::from_code(code.min(255) as u8),
        None => LanguageCode::Other,
    };
    let ext_fields = parsed.ext_fields.map(|m| m.0).unwrap_or_default();
    Ok(RemotingCommand {
        code: parsed.code,
        language,
        version: parsed.version.unwrap_or(0),
        opaque: parsed.opaque.unwrap_or(0),
        flag: parsed.flag.unwrap_or(0),
        remark: parsed.remark,
        ext_fields,
        ..RemotingCommand::default()
    })
}

fn encode_binary_header(command: &RemotingCommand) -> Result<Vec<u8>, FrameError> {
    let code = i16::try_from(command.code)
        .map_err(|_| FrameError::Binary("request code does not fit the binary header's i16"))?;
    let version = i16::try_from(command.version).unwrap_or(i16::MAX);
    let mut out = Vec::with_capacity(64);
    out.put_i16(code);
    out.put_u8(command.language.code());
    out.put_i16(version);
    out.put_i32(command.opaque);
    out.put_i32(command.flag);
    match &command.remark {
        Some(remark) => {
            out.put_i32(remark.len() as i32);
            out.put_slice(remark.as_bytes());
        }
        None => out.put_i32(0),
    }
    let mut ext = Vec::new();
    for (k, v) in &command.ext_fields {
        let key_len = i16::try_from(k.len()).map_err(|_| FrameError::Binary("ext key too long"))?;
        ext.put_i16(key_len);
        ext.put_slice(k.as_bytes());
        ext.put_i32(v.len() as i32);
        ext.put_slice(v.as_bytes());
    }
    out.put_i32(ext.len() as i32);
    out.extend_from_slice(&ext);
    Ok(out)
}

fn take_len(header: &mut Bytes, len: i64, what: &'static str) -> Result<Bytes, FrameError> {
    if len < 0 || len as usize > header.remaining() {
        return Err(FrameError::Binary(what));
    }
    Ok(header.split_to(len as usize))
}

fn utf8(bytes: Bytes, what: &'static str) -> Result<String, FrameError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| FrameError::Binary(what))
}

fn decode_binary_header(mut header: Bytes) -> Result<RemotingCommand, FrameError> {
    const FIXED: usize = 2 + 1 + 2 + 4 + 4 + 4;
    if header.remaining() < FIXED {
        return Err(FrameError::Binary("header shorter than its fixed part"));
    }
    let code = i32::from(header.get_i16());
    let language = LanguageCode::from_code(header.get_u8());
    let version = i32::from(header.get_i16());
    let opaque = header.get_i32();
    let flag = header.get_i32();
    let remark_len = i64::from(header.get_i32());
    let remark = match remark_len {
        0 => None,
        n => Some(utf8(
            take_len(&mut header, n, "remark length out of range")?,
            "remark is not UTF-8",
        )?),
    };
    if header.remaining() < 4 {
        return Err(FrameError::Binary("extFields length missing"));
    }
    let ext_len = i64::from(header.get_i32());
    let mut ext = take_len(&mut header, ext_len, "extFields length out of range")?;
    let mut ext_fields = ExtFields::default();
    while ext.has_remaining() {
        if ext_fields.len() >= MAX_EXT_FIELDS {
            return Err(FrameError::Binary("too many extFields"));
        }
        if ext.remaining() < 2 {
            return Err(FrameError::Binary("truncated ext key length"));
        }
        let key_len = i64::from(ext.get_i16());
        let key = utf8(
            take_len(&mut ext, key_len, "ext key length out of range")?,
            "ext key not UTF-8",
        )?;
        if ext.remaining() < 4 {
            return Err(FrameError::Binary("truncated ext value length"));
        }
        let value_len = i64::from(ext.get_i32());
        let value = utf8(
            take_len(&mut ext, value_len, "ext value length out of range")?,
            "ext value not UTF-8",
        )?;
        ext_fields.insert(key, value);
    }
    Ok(RemotingCommand {
        code,
        language,
        version,
        opaque,
        flag,
        remark,
        ext_fields,
        ..RemotingCommand::default()
    })
}
