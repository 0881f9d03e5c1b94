//! Request and response headers, read in place.
//!
//! Only the fields routing needs are read (api key, version, correlation id, where the body
//! starts); the header bytes themselves are reused verbatim when a request is split, so the
//! client id and any tagged header fields reach the broker exactly as the client sent them.

use kafka_protocol::messages::ApiKey;

use super::frame::LEN_PREFIX;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("header truncated")]
    Truncated,
    #[error("malformed header: {0}")]
    Malformed(&'static str),
}

/// What a request header says, with offsets into the frame (length prefix included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
    /// Known to kafka-protocol; unknown keys are passed through untouched.
    pub known: Option<ApiKey>,
    /// Offset of the body in the frame; `None` for unknown API keys, whose header layout
    /// is not known (their frames are never decoded).
    pub body_offset: Option<usize>,
}

/// Offset of the correlation id in a request frame (after length, api key and version).
pub const REQUEST_CORRELATION_OFFSET: usize = LEN_PREFIX + 4;
/// Offset of the correlation id in a response frame.
pub const RESPONSE_CORRELATION_OFFSET: usize = LEN_PREFIX;

/// Parses a request header. The frame must hold at least the 8 fixed bytes (the frame reader
/// guarantees it for client frames).
pub fn parse_request(frame: &[u8]) -> Result<RequestHeader, HeaderError> {
    let b = frame.get(LEN_PREFIX..).ok_or(HeaderError::Truncated)?;
    if b.len() < 8 {
        return Err(HeaderError::Truncated);
    }
    let api_key = i16::from_be_bytes([b[0], b[1]]);
    let api_version = i16::from_be_bytes([b[2], b[3]]);
    let correlation_id = i32::from_be_bytes([b[4], b[5], b[6], b[7]]);
    let known = ApiKey::try_from(api_key).ok();
    let body_offset = match known {
        None => None,
        Some(key) => {
            // Header v1: client_id is a nullable INT16-length string. v2 adds tagged fields.
            // (Header v0, without client_id, is only ControlledShutdown v0, long gone.)
            let hv = key.request_header_version(api_version);
            let mut off = 8;
            let len = i16::from_be_bytes([
                *b.get(off).ok_or(HeaderError::Truncated)?,
                *b.get(off + 1).ok_or(HeaderError::Truncated)?,
            ]);
            off += 2;
            if len > 0 {
                off += len as usize;
            } else if len < -1 {
                return Err(HeaderError::Malformed("negative client id length"));
            }
            if off > b.len() {
                return Err(HeaderError::Truncated);
            }
            if hv >= 2 {
                off = skip_tagged_fields(b, off)?;
            }
            Some(LEN_PREFIX + off)
        }
    };
    Ok(RequestHeader {
        api_key,
        api_version,
        correlation_id,
        known,
        body_offset,
    })
}

/// Offset of the body in a response frame, given the response header version (0 or 1).
pub fn response_body_offset(frame: &[u8], header_version: i16) -> Result<usize, HeaderError> {
    let b = frame.get(LEN_PREFIX..).ok_or(HeaderError::Truncated)?;
    if b.len() < 4 {
        return Err(HeaderError::Truncated);
    }
    let off = if header_version >= 1 {
        skip_tagged_fields(b, 4)?
    } else {
        4
    };
    Ok(LEN_PREFIX + off)
}

/// Response header version for an API key and version; ApiVersions responses always use v0
/// so that a client can read the error of a version it sent that the broker does not know.
pub fn response_header_version(key: ApiKey, version: i16) -> i16 {
    if key == ApiKey::ApiVersions {
        0
    } else {
        key.response_header_version(version)
    }
}

pub fn correlation_id_at(frame: &[u8], offset: usize) -> Option<i32> {
    frame
        .get(offset..offset + 4)
        .map(|s| i32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

pub fn set_correlation_id(frame: &mut [u8], offset: usize, id: i32) {
    frame[offset..offset + 4].copy_from_slice(&id.to_be_bytes());
}

fn read_uvarint(b: &[u8], off: &mut usize) -> Result<u32, HeaderError> {
    let mut value: u32 = 0;
    for shift in (0..35).step_by(7) {
        let byte = *b.get(*off).ok_or(HeaderError::Truncated)?;
        *off += 1;
        value |= ((byte & 0x7f) as u32) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(HeaderError::Malformed("varint longer than 5 bytes"))
}

fn skip_tagged_fields(b: &[u8], mut off: usize) -> Result<usize, HeaderError> {
    let n = read_uvarint(b, &mut off)?;
    for _ in 0..n {
        read_uvarint(b, &mut off)?;
        let size = read_uvarint(b, &mut off)? as usize;
        off = off
            .checked_add(size)
            .ok_or(HeaderError::Malformed("tagged field size"))?;
        if off > b.len() {
            return Err(HeaderError::Truncated);
        }
    }
    Ok(off)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::RequestHeader as KpHeader;
    use kafka_protocol::protocol::{encode_request_header_into_buffer, StrBytes};

    fn encoded(key: ApiKey, version: i16, client_id: Option<&str>, tags: bool) -> Vec<u8> {
        let mut h = KpHeader::default();
        h.request_api_key = key as i16;
        h.request_api_version = version;
        h.correlation_id = 77;
        h.client_id = client_id.map(|c| StrBytes::from_string(c.to_string()));
        if tags {
            h.unknown_tagged_fields
                .insert(5, bytes::Bytes::from_static(b"xyz"));
        }
        let mut body = BytesMut::new();
        encode_request_header_into_buffer(&mut body, &h).unwrap();
        body.extend_from_slice(b"BODY");
        let mut f = (body.len() as i32).to_be_bytes().to_vec();
        f.extend_from_slice(&body);
        f
    }

    #[test]
    fn finds_the_body_for_header_v1_and_v2() {
        for (key, version, tags) in [
            (ApiKey::Produce, 7, false),
            (ApiKey::Produce, 9, true),
            (ApiKey::Fetch, 12, true),
        ] {
            for cid in [None, Some(""), Some("client-x")] {
                let f = encoded(key, version, cid, tags);
                let h = parse_request(&f).unwrap();
                assert_eq!(
                    (h.api_key, h.api_version, h.correlation_id),
                    (key as i16, version, 77)
                );
                assert_eq!(
                    &f[h.body_offset.unwrap()..],
                    b"BODY",
                    "{key:?} v{version} {cid:?}"
                );
            }
        }
    }

    #[test]
    fn unknown_api_keys_have_no_body_offset() {
        let mut f = vec![0, 0, 0, 8];
        f.extend_from_slice(&[0x7f, 0x00, 0, 1, 0, 0, 0, 9]);
        let h = parse_request(&f).unwrap();
        assert_eq!(
            (h.api_key, h.correlation_id, h.known, h.body_offset),
            (0x7f00, 9, None, None)
        );
    }

    #[test]
    fn truncated_client_id_is_an_error() {
        let mut f = encoded(ApiKey::Metadata, 4, Some("abcdef"), false);
        f.truncate(14);
        assert_eq!(parse_request(&f), Err(HeaderError::Truncated));
    }
}
