//! The frame codec: both header encodings round-trip, a hand-built binary frame decodes to what
//! RocketMQ's layout says, and no input — truncated, oversized or random — panics the decoder.

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;
use tern_core::protocol::{
    ExtFields, FrameError, LanguageCode, MAX_FRAME_BYTES, RemotingCommand, SerializeType,
    decode_frame, encode_frame,
};

fn command_strategy() -> impl Strategy<Value = RemotingCommand> {
    (
        -32768i32..32767,
        0u8..13,
        any::<i16>(),
        any::<i32>(),
        0i32..4,
        // An empty remark is "no remark" in the binary layout (as in Java).
        proptest::option::of("[a-zA-Z0-9 ]{1,40}"),
        proptest::collection::hash_map("[a-zA-Z]{1,12}", "[ -~]{0,30}", 0..8),
        proptest::collection::vec(any::<u8>(), 0..300),
        any::<bool>(),
    )
        .prop_map(
            |(code, lang, version, opaque, flag, remark, ext, body, binary)| RemotingCommand {
                code,
                language: LanguageCode::from_code(lang),
                version: i32::from(version),
                opaque,
                flag,
                remark,
                ext_fields: ext.into_iter().collect(),
                body: Bytes::from(body),
                serialize_type: if binary {
                    SerializeType::RocketMq
                } else {
                    SerializeType::Json
                },
            },
        )
}

proptest! {
    #[test]
    fn frames_round_trip(command in command_strategy()) {
        let frame = encode_frame(&command).unwrap();
        let mut buf = BytesMut::from(&frame[..]);
        let decoded = decode_frame(&mut buf).unwrap().unwrap();
        prop_assert_eq!(decoded, command);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn partial_frames_wait_for_more(command in command_strategy(), cut in 0usize..1000) {
        let frame = encode_frame(&command).unwrap();
        let cut = cut % frame.len();
        let mut buf = BytesMut::from(&frame[..cut]);
        prop_assert_eq!(decode_frame(&mut buf), Ok(None));
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let mut buf = BytesMut::from(&bytes[..]);
        // Keep decoding until the decoder wants more or rejects the stream.
        while let Ok(Some(_)) = decode_frame(&mut buf) {}
    }

    #[test]
    fn damaged_frames_never_panic(command in command_strategy(), pos in any::<usize>(), byte in any::<u8>()) {
        let frame = encode_frame(&command).unwrap();
        let mut damaged = frame.to_vec();
        let pos = pos % damaged.len();
        damaged[pos] = byte;
        let mut buf = BytesMut::from(&damaged[..]);
        let _ = decode_frame(&mut buf);
    }
}

#[test]
fn binary_header_matches_the_reference_layout() {
    // code 10, JAVA, version 399, opaque 7, flag 0, remark "r", ext {a: bc}, body "xyz".
    let mut header = BytesMut::new();
    header.put_i16(10);
    header.put_u8(0);
    header.put_i16(399);
    header.put_i32(7);
    header.put_i32(0);
    header.put_i32(1);
    header.put_slice(b"r");
    let mut ext = BytesMut::new();
    ext.put_i16(1);
    ext.put_slice(b"a");
    ext.put_i32(2);
    ext.put_slice(b"bc");
    header.put_i32(ext.len() as i32);
    header.put_slice(&ext);
    let mut frame = BytesMut::new();
    frame.put_i32((4 + header.len() + 3) as i32);
    frame.put_u32((1 << 24) | header.len() as u32);
    frame.put_slice(&header);
    frame.put_slice(b"xyz");

    let decoded = decode_frame(&mut frame.clone()).unwrap().unwrap();
    let expected = RemotingCommand {
        code: 10,
        language: LanguageCode::Java,
        version: 399,
        opaque: 7,
        flag: 0,
        remark: Some("r".into()),
        ext_fields: ExtFields::from_iter([("a".to_string(), "bc".to_string())]),
        body: Bytes::from_static(b"xyz"),
        serialize_type: SerializeType::RocketMq,
    };
    assert_eq!(decoded, expected);
    assert_eq!(encode_frame(&expected).unwrap(), frame.freeze());
}

#[test]
fn json_header_uses_rocketmq_field_names() {
    let command = RemotingCommand::request(105).with_ext("topic", "T");
    let frame = encode_frame(&command).unwrap();
    let header_len = (u32::from_be_bytes(frame[4..8].try_into().unwrap()) & 0xFF_FFFF) as usize;
    let header: serde_json::Value = serde_json::from_slice(&frame[8..8 + header_len]).unwrap();
    assert_eq!(header["code"], 105);
    assert_eq!(header["language"], "RUST");
    assert_eq!(header["extFields"]["topic"], "T");
    assert_eq!(header["serializeTypeCurrentRPC"], "JSON");
    assert_eq!(frame[4], 0, "serialize type JSON in the high byte");
}

#[test]
fn a_java_style_json_header_decodes() {
    let header = br#"{"code":34,"extFields":{"n":5,"s":"x"},"flag":0,"language":"JAVA","opaque":9,"serializeTypeCurrentRPC":"JSON","version":475}"#;
    let mut frame = BytesMut::new();
    frame.put_i32((4 + header.len()) as i32);
    frame.put_u32(header.len() as u32);
    frame.put_slice(header);
    let decoded = decode_frame(&mut frame).unwrap().unwrap();
    assert_eq!(decoded.code, 34);
    assert_eq!(decoded.language, LanguageCode::Java);
    assert_eq!(decoded.opaque, 9);
    assert_eq!(decoded.ext("n"), Some("5"));
    assert_eq!(decoded.ext("s"), Some("x"));
}

#[test]
fn limits_are_named_errors() {
    let mut huge = BytesMut::new();
    huge.put_i32(MAX_FRAME_BYTES as i32 + 1);
    huge.put_u32(0);
    assert_eq!(
        decode_frame(&mut huge),
        Err(FrameError::FrameLength(MAX_FRAME_BYTES as i64 + 1))
    );

    let mut negative = BytesMut::new();
    negative.put_i32(-5);
    assert!(matches!(
        decode_frame(&mut negative),
        Err(FrameError::FrameLength(-5))
    ));

    let mut bad_header_len = BytesMut::new();
    bad_header_len.put_i32(8);
    bad_header_len.put_u32(100);
    bad_header_len.put_u32(0);
    assert!(matches!(
        decode_frame(&mut bad_header_len),
        Err(FrameError::HeaderLength { .. })
    ));

    let mut bad_type = BytesMut::new();
    bad_type.put_i32(4);
    bad_type.put_u32(7 << 24);
    assert_eq!(
        decode_frame(&mut bad_type),
        Err(FrameError::SerializeType(7))
    );

    let big = RemotingCommand::request(10).with_body(vec![0u8; MAX_FRAME_BYTES]);
    assert!(matches!(encode_frame(&big), Err(FrameError::TooLarge(_))));

    // More than 1,024 extFields, in either encoding.
    let mut many = RemotingCommand::request(10);
    for i in 0..1025 {
        many.ext_fields.insert(format!("k{i}"), "v".into());
    }
    for encoding in [SerializeType::Json, SerializeType::RocketMq] {
        let frame = encode_frame(&many.clone().with_serialize_type(encoding)).unwrap();
        let err = decode_frame(&mut BytesMut::from(&frame[..])).unwrap_err();
        assert!(err.to_string().contains("extFields"), "{encoding:?}: {err}");
    }

    // Binary headers carry the code as i16: 200050 (POP_MESSAGE) cannot be encoded that way.
    let pop = RemotingCommand::request(200_050).with_serialize_type(SerializeType::RocketMq);
    assert!(matches!(encode_frame(&pop), Err(FrameError::Binary(_))));
}
