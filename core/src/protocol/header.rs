//! Typed command headers over `extFields`.
//!
//! RocketMQ carries every request parameter as a string in `extFields`. Each header is declared
//! once with [`command_header!`]: field, Rust type and wire name. `Option<T>` fields may be absent;
//! every other field is required, and a missing or unparsable one is a [`HeaderError`] naming it,
//! which the broker returns to the peer instead of guessing a default.

use super::command::ExtFields;

/// A required header field is missing or does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("header field `{0}` is missing")]
    Missing(&'static str),
    #[error("header field `{field}` has an invalid value `{value}`")]
    Invalid { field: &'static str, value: String },
}

/// A header that can be written to and read from `extFields`.
pub trait CommandHeader: Sized {
    fn write_to(&self, ext: &mut ExtFields);
    fn read_from(ext: &ExtFields) -> Result<Self, HeaderError>;
}

/// A value that can live in an extension field.
pub trait HeaderValue: Sized {
    /// Parses `raw`; `None` means "invalid".
    fn parse_field(raw: Option<&str>, name: &'static str) -> Result<Self, HeaderError>;
    /// Renders the value; `None` leaves the field out.
    fn render_field(&self) -> Option<String>;
}

macro_rules! scalar_header_value {
    ($($t:ty),*) => {$(
        impl HeaderValue for $t {
            fn parse_field(raw: Option<&str>, name: &'static str) -> Result<Self, HeaderError> {
                let raw = raw.ok_or(HeaderError::Missing(name))?;
                raw.trim().parse::<$t>().map_err(|_| HeaderError::Invalid {
                    field: name,
                    value: raw.chars().take(64).collect(),
                })
            }
            fn render_field(&self) -> Option<String> {
                Some(self.to_string())
            }
        }
    )*};
}

scalar_header_value!(i32, i64, u32, u64, bool);

impl HeaderValue for String {
    fn parse_field(raw: Option<&str>, name: &'static str) -> Result<Self, HeaderError> {
        raw.map(str::to_string).ok_or(HeaderError::Missing(name))
    }
    fn render_field(&self) -> Option<String> {
        Some(self.clone())
    }
}

impl<T: HeaderValue> HeaderValue for Option<T> {
    fn parse_field(raw: Option<&str>, name: &'static str) -> Result<Self, HeaderError> {
        match raw {
            // Java clients write "null" for absent boxed values in some versions.
            None | Some("null") => Ok(None),
            Some(_) => T::parse_field(raw, name).map(Some),
        }
    }
    fn render_field(&self) -> Option<String> {
        self.as_ref().and_then(HeaderValue::render_field)
    }
}

/// Declares a header struct and its `extFields` mapping.
#[macro_export]
macro_rules! command_header {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty = $wire:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl $crate::protocol::header::CommandHeader for $name {
            fn write_to(&self, ext: &mut $crate::protocol::command::ExtFields) {
                ext.reserve([$($wire),*].len());
                $(
                    if let Some(v) = $crate::protocol::header::HeaderValue::render_field(&self.$field) {
                        ext.insert($wire.to_string(), v);
                    }
                )*
            }

            fn read_from(
                ext: &$crate::protocol::command::ExtFields,
            ) -> Result<Self, $crate::protocol::header::HeaderError> {
                Ok($name {
                    $(
                        $field: $crate::protocol::header::HeaderValue::parse_field(
                            ext.get($wire).map(String::as_str),
                            $wire,
                        )?,
                    )*
                })
            }
        }
    };
}
