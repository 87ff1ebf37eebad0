//! The remoting command: the one message type of RocketMQ's remoting protocol.
//!
//! Requests and responses share the shape; the `RESPONSE` flag tells them apart and `opaque` pairs a
//! response with its request. Typed headers live in `extFields` as strings, which is why
//! [`RemotingCommand::ext`] and the [`crate::protocol::header`] module exist.

use std::collections::HashMap;
use std::str::FromStr;

use bytes::Bytes;

use super::codes::{flag, response};
use super::header::{CommandHeader, HeaderError};

/// How the header of a frame is encoded (the high byte of the header-length word).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SerializeType {
    /// The header is a JSON object (RocketMQ's default).
    #[default]
    Json,
    /// The header uses RocketMQ's compact binary layout.
    RocketMq,
}

impl SerializeType {
    pub fn code(self) -> u8 {
        match self {
            SerializeType::Json => 0,
            SerializeType::RocketMq => 1,
        }
    }

    pub fn from_code(code: u8) -> Option<SerializeType> {
        match code {
            0 => Some(SerializeType::Json),
            1 => Some(SerializeType::RocketMq),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SerializeType::Json => "JSON",
            SerializeType::RocketMq => "ROCKETMQ",
        }
    }
}

/// The client language a peer announces. Only informative; unknown values are kept as `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LanguageCode {
    Java,
    Cpp,
    Dotnet,
    Python,
    Delphi,
    Erlang,
    Ruby,
    #[default]
    Other,
    Http,
    Go,
    Php,
    Oms,
    Rust,
}

const LANGUAGES: [(LanguageCode, &str); 13] = [
    (LanguageCode::Java, "JAVA"),
    (LanguageCode::Cpp, "CPP"),
    (LanguageCode::Dotnet, "DOTNET"),
    (LanguageCode::Python, "PYTHON"),
    (LanguageCode::Delphi, "DELPHI"),
    (LanguageCode::Erlang, "ERLANG"),
    (LanguageCode::Ruby, "RUBY"),
    (LanguageCode::Other, "OTHER"),
    (LanguageCode::Http, "HTTP"),
    (LanguageCode::Go, "GO"),
    (LanguageCode::Php, "PHP"),
    (LanguageCode::Oms, "OMS"),
    (LanguageCode::Rust, "RUST"),
];

impl LanguageCode {
    /// The byte used by the binary header (the Java enum's ordinal).
    pub fn code(self) -> u8 {
        LANGUAGES.iter().position(|(l, _)| *l == self).unwrap_or(7) as u8
    }

    pub fn from_code(code: u8) -> LanguageCode {
        LANGUAGES
            .get(code as usize)
            .map(|(l, _)| *l)
            .unwrap_or(LanguageCode::Other)
    }

    /// The name used by the JSON header.
    pub fn name(self) -> &'static str {
        LANGUAGES
            .iter()
            .find(|(l, _)| *l == self)
            .map(|(_, n)| *n)
            .unwrap_or("OTHER")
    }

    pub fn from_name(name: &str) -> LanguageCode {
        LANGUAGES
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(l, _)| *l)
            .unwrap_or(LanguageCode::Other)
    }
}

/// The protocol version we announce (RocketMQ 5.3's `MQVersion` ordinal region; peers only log it).
pub const PROTOCOL_VERSION: i32 = 475;

/// Extension fields: every request parameter, as strings. A seeded fast hasher: these maps are
/// built and read for every frame, and SipHash showed up in profiles; the seed keeps hostile keys
/// from degrading it (a frame holds at most 1,024 fields anyway).
pub type ExtFields = HashMap<String, String, foldhash::fast::RandomState>;

/// One frame of the remoting protocol.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RemotingCommand {
    pub code: i32,
    pub language: LanguageCode,
    pub version: i32,
    pub opaque: i32,
    pub flag: i32,
    pub remark: Option<String>,
    pub ext_fields: ExtFields,
    pub body: Bytes,
    pub serialize_type: SerializeType,
}

impl RemotingCommand {
    /// A request with `code`; the connection assigns `opaque` when it is sent.
    pub fn request(code: i32) -> RemotingCommand {
        RemotingCommand {
            code,
            language: LanguageCode::Rust,
            version: PROTOCOL_VERSION,
            ..RemotingCommand::default()
        }
    }

    /// A request carrying a typed header.
    pub fn request_with<H: CommandHeader>(code: i32, header: &H) -> RemotingCommand {
        let mut command = RemotingCommand::request(code);
        header.write_to(&mut command.ext_fields);
        command
    }

    /// A response with `code` and an optional remark; [`Self::answering`] pairs it with a request.
    pub fn response(code: i32, remark: impl Into<Option<String>>) -> RemotingCommand {
        RemotingCommand {
            code,
            language: LanguageCode::Rust,
            version: PROTOCOL_VERSION,
            flag: flag::RESPONSE,
            remark: remark.into(),
            ..RemotingCommand::default()
        }
    }

    /// A `SUCCESS` response.
    pub fn success() -> RemotingCommand {
        RemotingCommand::response(response::SUCCESS, None)
    }

    /// An error response with a remark that tells the peer what went wrong.
    pub fn error(code: i32, remark: impl Into<String>) -> RemotingCommand {
        RemotingCommand::response(code, Some(remark.into()))
    }

    /// Marks `self` as the response to `request`: same opaque and header encoding.
    pub fn answering(mut self, request: &RemotingCommand) -> RemotingCommand {
        self.opaque = request.opaque;
        self.flag |= flag::RESPONSE;
        self.serialize_type = request.serialize_type;
        self
    }

    pub fn with_body(mut self, body: impl Into<Bytes>) -> RemotingCommand {
        self.body = body.into();
        self
    }

    pub fn with_header<H: CommandHeader>(mut self, header: &H) -> RemotingCommand {
        header.write_to(&mut self.ext_fields);
        self
    }

    pub fn with_ext(mut self, key: &str, value: impl ToString) -> RemotingCommand {
        self.ext_fields.insert(key.to_string(), value.to_string());
        self
    }

    pub fn with_serialize_type(mut self, serialize_type: SerializeType) -> RemotingCommand {
        self.serialize_type = serialize_type;
        self
    }

    pub fn is_response(&self) -> bool {
        self.flag & flag::RESPONSE != 0
    }

    pub fn is_oneway(&self) -> bool {
        self.flag & flag::ONEWAY != 0
    }

    pub fn mark_oneway(&mut self) {
        self.flag |= flag::ONEWAY;
    }

    pub fn is_success(&self) -> bool {
        self.code == response::SUCCESS
    }

    /// An extension field as a string.
    pub fn ext(&self, key: &str) -> Option<&str> {
        self.ext_fields.get(key).map(String::as_str)
    }

    /// A required extension field parsed as `T`.
    pub fn ext_parse<T: FromStr>(&self, key: &'static str) -> Result<T, HeaderError> {
        let raw = self.ext(key).ok_or(HeaderError::Missing(key))?;
        raw.trim().parse().map_err(|_| HeaderError::Invalid {
            field: key,
            value: raw.chars().take(64).collect(),
        })
    }

    /// Decodes the typed header `H` from the extension fields.
    pub fn header<H: CommandHeader>(&self) -> Result<H, HeaderError> {
        H::read_from(&self.ext_fields)
    }

    /// The remark, or an empty string.
    pub fn remark_or_empty(&self) -> &str {
        self.remark.as_deref().unwrap_or("")
    }
}
