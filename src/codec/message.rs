//! Decoding and encoding message bodies with `kafka-protocol`, framed the way the wire wants.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Decodable, Encodable};

use super::frame::LEN_PREFIX;
use super::header::{response_body_offset, response_header_version, HeaderError};
use super::sanity::{self, Direction, Implausible};

#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("{api:?} v{version}: {source}")]
    Decode {
        api: ApiKey,
        version: i16,
        source: anyhow::Error,
    },
    #[error("{api:?} v{version}: encoding failed: {source}")]
    Encode {
        api: ApiKey,
        version: i16,
        source: anyhow::Error,
    },
    #[error("{api:?} v{version}: {left} bytes left over after the body")]
    TrailingBytes {
        api: ApiKey,
        version: i16,
        left: usize,
    },
    #[error("{api:?} v{version}: {source}")]
    Implausible {
        api: ApiKey,
        version: i16,
        source: Implausible,
    },
    #[error(transparent)]
    Header(#[from] HeaderError),
}

/// Decodes a request body that starts at `offset` of `frame`. Record batches inside it come out as
/// slices of the frame (no copy). Trailing garbage is an error: a frame is either understood
/// completely or passed through untouched.
pub fn decode_body<T: Decodable>(
    frame: &Bytes,
    offset: usize,
    api: ApiKey,
    version: i16,
) -> Result<T, MessageError> {
    decode_at(frame, offset, api, version, Direction::Request)
}

fn decode_at<T: Decodable>(
    frame: &Bytes,
    offset: usize,
    api: ApiKey,
    version: i16,
    dir: Direction,
) -> Result<T, MessageError> {
    if offset > frame.len() {
        return Err(HeaderError::Truncated.into());
    }
    // The decoder reserves memory for an array's claimed length before reading an element; an
    // allocation failure aborts the process (no panic to catch). Walk the lengths first.
    sanity::check(&frame[offset..], api, version, dir).map_err(|source| {
        MessageError::Implausible {
            api,
            version,
            source,
        }
    })?;
    let mut body = frame.slice(offset..);
    // kafka-protocol reports malformed input as errors; it can also panic on some inputs (for
    // example arithmetic on hostile lengths). A panic must cost one frame, not the process.
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        T::decode(&mut body, version)
    }));
    match decoded {
        Ok(Ok(v)) if body.is_empty() => Ok(v),
        Ok(Ok(_)) => Err(MessageError::TrailingBytes {
            api,
            version,
            left: body.len(),
        }),
        Ok(Err(source)) => Err(MessageError::Decode {
            api,
            version,
            source,
        }),
        Err(_) => Err(MessageError::Decode {
            api,
            version,
            source: anyhow::anyhow!("decoder panicked"),
        }),
    }
}

/// Decodes a response frame of the given API and version.
pub fn decode_response<T: Decodable>(
    frame: &Bytes,
    api: ApiKey,
    version: i16,
) -> Result<T, MessageError> {
    let off = response_body_offset(frame, response_header_version(api, version))?;
    decode_at(frame, off, api, version, Direction::Response)
}

/// Builds a response frame: length, correlation id, (empty tagged fields for header v1), body.
pub fn encode_response<T: Encodable>(
    msg: &T,
    api: ApiKey,
    version: i16,
    correlation_id: i32,
) -> Result<Bytes, MessageError> {
    let hv = response_header_version(api, version);
    let body_len = msg
        .compute_size(version)
        .map_err(|source| MessageError::Encode {
            api,
            version,
            source,
        })?;
    let header_len = if hv >= 1 { 5 } else { 4 };
    let mut buf = BytesMut::with_capacity(LEN_PREFIX + header_len + body_len);
    buf.put_i32((header_len + body_len) as i32);
    buf.put_i32(correlation_id);
    if hv >= 1 {
        buf.put_u8(0); // no tagged fields
    }
    msg.encode(&mut buf, version)
        .map_err(|source| MessageError::Encode {
            api,
            version,
            source,
        })?;
    Ok(buf.freeze())
}

/// Builds a request frame from raw header bytes (everything between the length prefix and the
/// body, reused verbatim from the client's request) and a new body.
pub fn encode_request_with_header<T: Encodable>(
    header: &[u8],
    msg: &T,
    api: ApiKey,
    version: i16,
) -> Result<BytesMut, MessageError> {
    let body_len = msg
        .compute_size(version)
        .map_err(|source| MessageError::Encode {
            api,
            version,
            source,
        })?;
    let mut buf = BytesMut::with_capacity(LEN_PREFIX + header.len() + body_len);
    buf.put_i32((header.len() + body_len) as i32);
    buf.put_slice(header);
    msg.encode(&mut buf, version)
        .map_err(|source| MessageError::Encode {
            api,
            version,
            source,
        })?;
    Ok(buf)
}

/// Builds one of fairlead's own requests (header v1 or v2, client id "fairlead").
pub fn encode_own_request<T: Encodable>(
    msg: &T,
    api: ApiKey,
    version: i16,
    correlation_id: i32,
) -> Result<BytesMut, MessageError> {
    const CLIENT_ID: &[u8] = b"fairlead";
    let mut header = Vec::with_capacity(8 + 2 + CLIENT_ID.len() + 1);
    header.extend_from_slice(&(api as i16).to_be_bytes());
    header.extend_from_slice(&version.to_be_bytes());
    header.extend_from_slice(&correlation_id.to_be_bytes());
    header.extend_from_slice(&(CLIENT_ID.len() as i16).to_be_bytes());
    header.extend_from_slice(CLIENT_ID);
    if api.request_header_version(version) >= 2 {
        header.push(0);
    }
    encode_request_with_header(&header, msg, api, version)
}
