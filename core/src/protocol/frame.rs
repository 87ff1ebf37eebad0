//! Frame codec: `[length i32][serializeType << 24 | headerLength][header][body]`.
//!
//! `length` counts everything after itself. Every size is checked before anything is allocated
//! ([`MAX_FRAME_BYTES`] and friends), so a hostile length prefix costs the peer its connection and
//! costs us nothing. Both header encodings of reference §7 are supported: JSON (RocketMQ's default)
//! and the compact ROCKETMQ binary layout. A response is encoded the way its request was.

use std::collections::HashMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde_json::{Map, Value};

use super::command::{LanguageCode, RemotingCommand, SerializeType};

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

fn encode_json_header(command: &RemotingCommand) -> Vec<u8> {
    let mut object = Map::new();
    object.insert("code".into(), command.code.into());
    object.insert("language".into(), command.language.name().into());
    object.insert("version".into(), command.version.into());
    object.insert("opaque".into(), command.opaque.into());
    object.insert("flag".into(), command.flag.into());
    if let Some(remark) = &command.remark {
        object.insert("remark".into(), remark.clone().into());
    }
    if !command.ext_fields.is_empty() {
        let ext: Map<String, Value> = command
            .ext_fields
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        object.insert("extFields".into(), Value::Object(ext));
    }
    object.insert("serializeTypeCurrentRPC".into(), "JSON".into());
    serde_json::to_vec(&Value::Object(object)).expect("a JSON map always serializes")
}

fn decode_json_header(header: &[u8]) -> Result<RemotingCommand, FrameError> {
    let value: Value =
        serde_json::from_slice(header).map_err(|e| FrameError::Json(e.to_string()))?;
    let Value::Object(object) = value else {
        return Err(FrameError::Json("header is not a JSON object".into()));
    };
    let int = |name: &str, required: bool| -> Result<i32, FrameError> {
        match object.get(name) {
            None | Some(Value::Null) if !required => Ok(0),
            Some(Value::Number(n)) => n
                .as_i64()
                .and_then(|v| i32::try_from(v).ok())
                .ok_or_else(|| FrameError::Json(format!("`{name}` is not a 32-bit integer"))),
            _ => Err(FrameError::Json(format!(
                "`{name}` is missing or not a number"
            ))),
        }
    };
    let language = match object.get("language") {
        Some(Value::String(name)) => LanguageCode::from_name(name),
        Some(Value::Number(n)) => LanguageCode::from_code(n.as_u64().unwrap_or(7).min(255) as u8),
        _ => LanguageCode::Other,
    };
    let remark = match object.get("remark") {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let mut ext_fields = HashMap::new();
    if let Some(Value::Object(ext)) = object.get("extFields") {
        if ext.len() > MAX_EXT_FIELDS {
            return Err(FrameError::Json(format!(
                "more than {MAX_EXT_FIELDS} extFields"
            )));
        }
        for (k, v) in ext {
            // Values are strings in Java's HashMap<String, String>; tolerate peers that send
            // numbers or booleans by keeping their JSON text.
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Null => continue,
                other => other.to_string(),
            };
            ext_fields.insert(k.clone(), text);
        }
    }
    Ok(RemotingCommand {
        code: int("code", true)?,
        language,
        version: int("version", false)?,
        opaque: int("opaque", false)?,
        flag: int("flag", false)?,
        remark,
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
    let mut ext_fields = HashMap::new();
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
