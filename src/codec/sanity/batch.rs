//! Record batches (KIP-98, magic 2), checked before `RecordBatchDecoder` reads them.

use super::walker::Walker;
use super::Implausible;

// ---------------------------------------------------------------------------------------------
// Record batches
// ---------------------------------------------------------------------------------------------

/// Batch header (magic 2, KIP-98): base offset 8, batch length 4, leader epoch 4, magic 1,
/// crc 4, attributes 2, last offset delta 4, first and max timestamp 8 + 8, producer id 8,
/// producer epoch 2, base sequence 4, record count 4.
const BATCH_HEADER: usize = 61;
const BATCH_LENGTH_AT: usize = 8;
const MAGIC_AT: usize = 16;
const RECORD_COUNT_AT: usize = 57;
const FIRST_TIMESTAMP_AT: usize = 27;
/// The smallest record: length, attributes, timestamp delta, offset delta, key length, value
/// length and header count, one byte each.
const MIN_RECORD: usize = 7;

/// Checks the first record batch of `records` before `kafka-protocol`'s `RecordBatchDecoder`
/// reads it: the decoder reserves room for the batch's record count, and for each record's
/// header count, before reading a single record. A batch of an uncompressed producer is walked
/// record by record; a compressed one can only be judged once decompressed: pass the
/// decompressed bytes to [`record_shapes`] (`RecordBatchDecoder::decode_with_custom_compression`
/// lets the caller do that). Other magics pass: the decoder refuses them without allocating.
pub fn record_batch(records: &[u8]) -> Result<(), Implausible> {
    let field = "record batch";
    if records.len() < BATCH_HEADER {
        return Err(Implausible::Truncated {
            field,
            at: records.len(),
        });
    }
    if records[MAGIC_AT] != 2 {
        return Ok(());
    }
    let len = i32::from_be_bytes(
        records[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4]
            .try_into()
            .expect("4"),
    );
    let end = usize::try_from(len).ok().and_then(|l| l.checked_add(12));
    match end {
        Some(end) if end >= BATCH_HEADER && end <= records.len() => {
            let attributes = i16::from_be_bytes([records[21], records[22]]);
            if attributes & 0x07 == 0 {
                records_after_header(
                    &records[BATCH_HEADER..end],
                    &BatchHeader::of(records),
                    &mut |_| {},
                )
                .map(|_| ())
            } else {
                Ok(())
            }
        }
        _ => Err(Implausible::Length {
            field: "batch length",
            at: BATCH_LENGTH_AT,
            claimed: len as u64,
            left: records.len().saturating_sub(12),
        }),
    }
}

/// What a batch's records are read against: the decoder adds each record's offset delta to the
/// base offset and its timestamp delta to the first timestamp.
#[derive(Debug, Clone, Copy)]
pub struct BatchHeader {
    pub count: i32,
    pub base_offset: i64,
    pub first_timestamp: i64,
}

impl BatchHeader {
    /// Reads a batch header (`batch` holds at least [`BATCH_HEADER`] bytes).
    pub fn of(batch: &[u8]) -> BatchHeader {
        let i64_at = |at: usize| i64::from_be_bytes(batch[at..at + 8].try_into().expect("8"));
        BatchHeader {
            count: i32::from_be_bytes(
                batch[RECORD_COUNT_AT..RECORD_COUNT_AT + 4]
                    .try_into()
                    .expect("4"),
            ),
            base_offset: i64_at(0),
            first_timestamp: i64_at(FIRST_TIMESTAMP_AT),
        }
    }
}

/// What `RecordBatchDecoder` does not give back of a record, for a comparison that must see all
/// of it: the attributes byte (read and dropped), how many headers the record holds (the decoder
/// keeps them in a map by key, so two headers with one key come back as one), and how many bytes
/// the record's length covers after its last header (never read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordShape {
    pub attributes: i8,
    pub headers: usize,
    pub unread: usize,
}

/// Checks the records in `data`, the (decompressed) record bytes of a batch with `header`: every
/// record length, key, value and header count must be backed by bytes, and every offset and
/// timestamp delta must fit when added to the batch's base (the decoder adds them unchecked,
/// which panics in a build with overflow checks). Gives the shape of each record, and how many
/// bytes of `data` follow the last one (the decoder never reads them either). A negative record
/// count, which the decoder refuses, gives no records.
pub fn record_shapes(
    data: &[u8],
    header: &BatchHeader,
) -> Result<(Vec<RecordShape>, usize), Implausible> {
    let mut shapes = Vec::new();
    let end = records_after_header(data, header, &mut |s| shapes.push(s))?;
    Ok((shapes, data.len() - end))
}

/// Walks the records, handing each one's shape to `each`; returns where the last one ends.
fn records_after_header(
    data: &[u8],
    header: &BatchHeader,
    each: &mut dyn FnMut(RecordShape),
) -> Result<usize, Implausible> {
    let mut w = Walker::new(data, 0, false);
    // A negative count: the decoder refuses it before reserving anything.
    let Ok(count) = usize::try_from(header.count) else {
        return Ok(0);
    };
    if count > data.len() / MIN_RECORD {
        return Err(w.too_long("record count", 0, count as u64));
    }
    for _ in 0..count {
        let size = w.varint_len("record length")?;
        let at = w.at;
        w.skip(size, "record length")?;
        let mut r = Walker::new(&data[at..at + size], 0, false);
        let [attributes] = r.array::<1>("record attributes")?;
        let delta_at = at + r.at;
        let delta = r.varlong("timestamp delta")?;
        if header.first_timestamp.checked_add(delta).is_none() {
            return Err(Implausible::Overflow {
                field: "timestamp delta",
                at: delta_at,
            });
        }
        let delta_at = at + r.at;
        let delta = r.varint("offset delta")?;
        if header.base_offset.checked_add(i64::from(delta)).is_none() {
            return Err(Implausible::Overflow {
                field: "offset delta",
                at: delta_at,
            });
        }
        for field in ["record key", "record value"] {
            let n = r.varint_len(field)?;
            r.skip(n, field)?;
        }
        let headers_at = r.at;
        let headers = r.varint_len("record headers")?;
        // A header takes at least two bytes: key length and value length.
        if headers > r.left() / 2 {
            return Err(r.too_long("record headers", headers_at, headers as u64));
        }
        for _ in 0..headers {
            for field in ["header key", "header value"] {
                let n = r.varint_len(field)?;
                r.skip(n, field)?;
            }
        }
        each(RecordShape {
            attributes: attributes as i8,
            headers,
            unread: r.left(),
        });
    }
    Ok(w.at)
}

impl Walker<'_> {
    /// A zigzag varint length as the record decoder reads it: -1 (null) reads as 0.
    fn varint_len(&mut self, field: &'static str) -> Result<usize, Implausible> {
        let at = self.at;
        match self.varint(field)? {
            -1 => Ok(0),
            n if n < -1 => Err(Implausible::NegativeLength { field, at, len: n }),
            n => Ok(n as usize),
        }
    }

    /// A zigzag varint, read exactly as the record decoder reads it (at most 5 bytes).
    fn varint(&mut self, field: &'static str) -> Result<i32, Implausible> {
        let zigzag = self.uvarint(field)?;
        Ok(((zigzag >> 1) as i32) ^ -((zigzag & 1) as i32))
    }

    /// A zigzag varlong, read exactly as the record decoder reads it (at most 10 bytes).
    fn varlong(&mut self, field: &'static str) -> Result<i64, Implausible> {
        let mut zigzag: u64 = 0;
        for i in 0..10 {
            let [b] = self.array::<1>(field)?;
            zigzag |= u64::from(b & 0x7f) << (i * 7);
            if b < 0x80 {
                break;
            }
        }
        Ok(((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64))
    }
}
