//! Protobuf fields read and written directly, without message types.
//!
//! Reading: an encoded message's fields in place, without decoding it, for
//! taking a message apart around the part that changes (a route
//! configuration's virtual hosts) and for looking at the one field wanted (a
//! simulated proxy reading resource names and bodies).
//!
//! Writing: the heads and lengths of length-delimited fields, for messages
//! written straight to bytes (response entries, endpoint assignments, the
//! fields of a response around its shared resources), as prost writes them.

use std::ops::Range;

use bytes::BufMut;
use prost::encoding::{
    decode_key, decode_varint, encode_key, encode_varint, encoded_len_varint, WireType,
};

/// Length of a length-delimited field of `len` bytes whose tag is below 16
/// (a one-byte key).
pub fn field_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// The key and length of the length-delimited field `tag` of `len` bytes.
pub fn put_field_head(tag: u32, len: usize, buf: &mut impl BufMut) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}

/// Length of a string field whose tag is below 16: none when empty, as
/// proto3 leaves an empty string out.
pub fn str_field_len(value: &str) -> usize {
    if value.is_empty() {
        0
    } else {
        field_len(value.len())
    }
}

/// A proto3 string field: left out when empty, as prost writes it.
pub fn put_str_field(tag: u32, value: &str, buf: &mut impl BufMut) {
    if !value.is_empty() {
        put_field_head(tag, value.len(), buf);
        buf.put_slice(value.as_bytes());
    }
}

/// One top-level field of an encoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub tag: u32,
    pub wire_type: WireType,
    /// Where a length-delimited value's bytes are (empty for other types).
    pub value: Range<usize>,
    /// Where the next field starts.
    pub end: usize,
}

/// The field starting at `pos`; `None` if the bytes do not parse (or use
/// groups, which Envoy's messages never do).
pub fn next_field(body: &[u8], pos: usize) -> Option<Field> {
    let mut rest = body.get(pos..)?;
    let (tag, wire_type) = decode_key(&mut rest).ok()?;
    let mut value = 0..0;
    match wire_type {
        WireType::Varint => {
            decode_varint(&mut rest).ok()?;
        }
        WireType::SixtyFourBit => rest = rest.get(8..)?,
        WireType::ThirtyTwoBit => rest = rest.get(4..)?,
        WireType::LengthDelimited => {
            let len = usize::try_from(decode_varint(&mut rest).ok()?).ok()?;
            let start = body.len() - rest.len();
            rest = rest.get(len..)?;
            value = start..start + len;
        }
        WireType::StartGroup | WireType::EndGroup => return None,
    }
    Some(Field {
        tag,
        wire_type,
        value,
        end: body.len() - rest.len(),
    })
}

/// The value of the length-delimited field `tag` (a string, bytes or a
/// message), the last one if it appears more than once as for any singular
/// field; `None` if it is absent or `body` does not parse.
pub fn bytes_field(body: &[u8], tag: u32) -> Option<&[u8]> {
    let mut found = None;
    let mut pos = 0;
    while pos < body.len() {
        let field = next_field(body, pos)?;
        if field.tag == tag && field.wire_type == WireType::LengthDelimited {
            found = Some(field.value.clone());
        }
        pos = field.end;
    }
    found.map(|range| &body[range])
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::service::discovery::v3::Resource;
    use envoy_types::pb::google::protobuf::{Any, Duration};
    use prost::Message;

    #[test]
    fn fields_are_found_where_prost_wrote_them() {
        let resource = Resource {
            name: "outbound|80||a".into(),
            version: "7".into(),
            resource: Some(Any {
                type_url: "t".into(),
                value: vec![1, 2, 3],
            }),
            ttl: Some(Duration {
                seconds: 5,
                nanos: 0,
            }),
            ..Default::default()
        };
        let bytes = resource.encode_to_vec();
        assert_eq!(bytes_field(&bytes, 3), Some(&b"outbound|80||a"[..]));
        let any = bytes_field(&bytes, 2).expect("resource");
        assert_eq!(bytes_field(any, 2), Some(&[1, 2, 3][..]));
        assert_eq!(bytes_field(&bytes, 4), None, "no aliases were written");

        let mut pos = 0;
        let mut tags = Vec::new();
        while pos < bytes.len() {
            let field = next_field(&bytes, pos).expect("parses");
            tags.push(field.tag);
            pos = field.end;
        }
        assert_eq!(tags, [1, 2, 3, 6]);
    }

    #[test]
    fn truncated_bytes_do_not_parse() {
        let bytes = Any {
            type_url: "type".into(),
            value: vec![9; 10],
        }
        .encode_to_vec();
        let cut = &bytes[..bytes.len() - 1];
        assert_eq!(bytes_field(cut, 2), None);
        assert!(next_field(cut, 6).is_none());
        assert_eq!(bytes_field(&bytes, 1), Some(&b"type"[..]));
    }

    #[test]
    fn a_repeated_singular_field_reads_as_its_last_value() {
        let mut bytes = Any {
            type_url: "first".into(),
            value: Vec::new(),
        }
        .encode_to_vec();
        bytes.extend(
            Any {
                type_url: "last".into(),
                value: Vec::new(),
            }
            .encode_to_vec(),
        );
        assert_eq!(bytes_field(&bytes, 1), Some(&b"last"[..]));
    }
}
