//! Walks a message body along its schema without allocating (see the module above).

use super::schema::{Field, Ty};
use super::Implausible;

pub(super) struct Walker<'a> {
    b: &'a [u8],
    pub(super) at: usize,
    version: i16,
    /// Flexible versions (KIP-482): compact lengths (unsigned varint N+1, 0 = null) and a tagged
    /// field section at the end of every struct.
    flexible: bool,
}

impl<'a> Walker<'a> {
    pub(super) fn new(b: &'a [u8], version: i16, flexible: bool) -> Walker<'a> {
        Walker {
            b,
            at: 0,
            version,
            flexible,
        }
    }

    pub(super) fn left(&self) -> usize {
        self.b.len() - self.at
    }

    pub(super) fn fields(&mut self, fields: &[Field]) -> Result<(), Implausible> {
        let v = self.version;
        for f in fields.iter().filter(|f| f.tag.is_none() && f.in_version(v)) {
            self.value(f.ty, f.name)?;
        }
        if self.flexible {
            self.tagged(fields)?;
        }
        Ok(())
    }

    pub(super) fn value(&mut self, ty: Ty, field: &'static str) -> Result<(), Implausible> {
        match ty {
            Ty::Fixed(n) => self.fixed(n, field),
            Ty::Str => {
                let n = self.length(field, false)?;
                self.skip(n, field)
            }
            Ty::Bytes => {
                let n = self.length(field, true)?;
                self.skip(n, field)
            }
            Ty::Struct(fields) => self.fields(fields),
            Ty::NullableStruct(fields) => {
                // As kafka-protocol's OptionStruct reads it: present only if the marker is 1.
                let [present] = self.array::<1>(field)?;
                if present == 1 {
                    self.fields(fields)
                } else {
                    Ok(())
                }
            }
            Ty::Structs(fields) => {
                let n = self.count(field, 1)?;
                for _ in 0..n {
                    self.fields(fields)?;
                }
                Ok(())
            }
            Ty::Strs => {
                // A string takes at least its length: 1 byte compact, 2 otherwise.
                let n = self.count(field, if self.flexible { 1 } else { 2 })?;
                for _ in 0..n {
                    let len = self.length(field, false)?;
                    self.skip(len, field)?;
                }
                Ok(())
            }
            Ty::Fixeds(width) => {
                let n = self.count(field, width)?;
                self.skip(n * width, field)
            }
        }
    }

    /// The tagged field section: known tags are read in place, as `kafka-protocol` does (it
    /// decodes them from the stream and ignores their declared size); unknown ones are skipped.
    pub(super) fn tagged(&mut self, fields: &[Field]) -> Result<(), Implausible> {
        const FIELD: &str = "tagged fields";
        let at = self.at;
        let n = self.uvarint(FIELD)? as usize;
        // Each tagged field takes at least two bytes (tag and size).
        if n > self.left() / 2 {
            return Err(self.too_long(FIELD, at, n as u64));
        }
        for _ in 0..n {
            let at = self.at;
            let tag = self.uvarint(FIELD)?;
            if tag > i32::MAX as u32 {
                // kafka-protocol keeps unknown tags as i32 and then cannot encode them again
                // (the count it writes includes a field it leaves out): a frame fairlead would
                // re-encode must not carry one.
                return Err(Implausible::Tag {
                    field: FIELD,
                    at,
                    tag,
                });
            }
            let size = self.uvarint(FIELD)? as usize;
            match fields
                .iter()
                .find(|f| f.tag == Some(tag) && f.in_version(self.version))
            {
                Some(f) => self.value(f.ty, f.name)?,
                None => self.skip(size, FIELD)?,
            }
        }
        Ok(())
    }

    /// An array's element count, each element taking at least `min` bytes; 0 for null.
    pub(super) fn count(&mut self, field: &'static str, min: usize) -> Result<usize, Implausible> {
        let at = self.at;
        let n = self.length(field, true)?;
        if n > self.left() / min {
            return Err(self.too_long(field, at, n as u64));
        }
        Ok(n)
    }

    /// A length prefix: compact in flexible versions (N+1, 0 = null), else INT16 for strings
    /// and INT32 for bytes and arrays (-1 = null). Null reads as 0: the walk only cares about
    /// how far to go.
    pub(super) fn length(&mut self, field: &'static str, wide: bool) -> Result<usize, Implausible> {
        let at = self.at;
        let n: i64 = if self.flexible {
            i64::from(self.uvarint(field)?) - 1
        } else if wide {
            i64::from(i32::from_be_bytes(self.array(field)?))
        } else {
            i64::from(i16::from_be_bytes(self.array(field)?))
        };
        match n {
            -1 => Ok(0),
            n if n < -1 => Err(Implausible::NegativeLength {
                field,
                at,
                len: n as i32,
            }),
            n => Ok(n as usize),
        }
    }

    /// An unsigned varint read exactly as `kafka-protocol` reads it: at most five bytes, the
    /// bits beyond 32 dropped.
    pub(super) fn uvarint(&mut self, field: &'static str) -> Result<u32, Implausible> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let [b] = self.array::<1>(field)?;
            value |= u32::from(b & 0x7f) << (i * 7);
            if b < 0x80 {
                break;
            }
        }
        Ok(value)
    }

    pub(super) fn array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], Implausible> {
        let bytes = self
            .b
            .get(self.at..self.at + N)
            .ok_or(Implausible::Truncated { field, at: self.at })?;
        self.at += N;
        Ok(bytes.try_into().expect("N bytes"))
    }

    pub(super) fn fixed(&mut self, n: usize, field: &'static str) -> Result<(), Implausible> {
        if n > self.left() {
            return Err(Implausible::Truncated { field, at: self.at });
        }
        self.at += n;
        Ok(())
    }

    pub(super) fn skip(&mut self, n: usize, field: &'static str) -> Result<(), Implausible> {
        if n > self.left() {
            return Err(self.too_long(field, self.at, n as u64));
        }
        self.at += n;
        Ok(())
    }

    pub(super) fn too_long(&self, field: &'static str, at: usize, claimed: u64) -> Implausible {
        Implausible::Length {
            field,
            at,
            claimed,
            left: self.left(),
        }
    }
}
