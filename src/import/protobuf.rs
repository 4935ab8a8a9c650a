//! The little of the protobuf wire format and CRC32C that TensorBoard event files need.
//!
//! Hand-written instead of `prost` + generated code: the importer reads five messages and a
//! handful of fields, and every read here is bounds-checked so hostile bytes give an error, not a
//! panic. Reference: <https://protobuf.dev/programming-guides/encoding/>.

/// A field value as laid out on the wire.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Wire<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1 (`double`, `fixed64`).
    Fixed64(u64),
    /// Wire type 2 (strings, bytes, sub-messages, packed repeated fields).
    Bytes(&'a [u8]),
    /// Wire type 5 (`float`, `fixed32`).
    Fixed32(u32),
}

/// Where and why decoding failed; offsets are relative to the message being decoded.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct DecodeError {
    pub offset: usize,
    pub what: &'static str,
}

/// Iterates over the `(field number, value)` pairs of one message.
pub(super) struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Fields { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let bytes = end
            .and_then(|e| self.buf.get(self.pos..e))
            .ok_or(DecodeError {
                offset: self.pos,
                what: "field runs past the end of the message",
            })?;
        self.pos += n;
        Ok(bytes)
    }

    fn field(&mut self) -> Result<(u32, Wire<'a>), DecodeError> {
        let start = self.pos;
        let key = varint(self.buf, &mut self.pos)?;
        // The protobuf spec allows field numbers 1 to 2^29 - 1; a 0 is never written by an
        // encoder, so a key that decodes to it means the bytes are not a message.
        let number = match key >> 3 {
            0 => {
                return Err(DecodeError {
                    offset: start,
                    what: "field number 0 (protobuf numbers start at 1)",
                })
            }
            n if n > (1 << 29) - 1 => {
                return Err(DecodeError {
                    offset: start,
                    what: "field number above 2^29 - 1",
                })
            }
            n => n as u32,
        };
        let value = match key & 7 {
            0 => Wire::Varint(varint(self.buf, &mut self.pos)?),
            1 => Wire::Fixed64(u64::from_le_bytes(array(self.take(8)?))),
            2 => {
                let len = varint(self.buf, &mut self.pos)?;
                let len = usize::try_from(len).map_err(|_| DecodeError {
                    offset: start,
                    what: "length too large",
                })?;
                Wire::Bytes(self.take(len)?)
            }
            5 => Wire::Fixed32(u32::from_le_bytes(array(self.take(4)?))),
            _ => {
                return Err(DecodeError {
                    offset: start,
                    what: "unsupported wire type (groups or garbage)",
                })
            }
        };
        Ok((number, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Wire<'a>), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let item = self.field();
        if item.is_err() {
            // Stop after the first error: the rest of the message cannot be framed.
            self.pos = self.buf.len();
        }
        Some(item)
    }
}

fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    out
}

/// Reads a base-128 varint at `*pos`, advancing it.
pub(super) fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, DecodeError> {
    let start = *pos;
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let Some(&byte) = buf.get(*pos) else {
            return Err(DecodeError {
                offset: start,
                what: "truncated varint",
            });
        };
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(DecodeError {
        offset: start,
        what: "varint longer than 10 bytes",
    })
}

/// CRC32C (Castagnoli, reflected polynomial `0x82F63B78`) lookup table, built at compile time.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// Computes the CRC32C of `data`. Time: `O(n)`, one table lookup per byte.
pub(super) fn crc32c(data: &[u8]) -> u32 {
    !data.iter().fold(!0u32, |c, &b| {
        CRC_TABLE[usize::from((c as u8) ^ b)] ^ (c >> 8)
    })
}

/// TFRecord's masked CRC: rotating keeps a CRC of data that itself holds CRCs from degenerating.
pub(super) fn masked_crc32c(data: &[u8]) -> u32 {
    crc32c(data).rotate_right(15).wrapping_add(0xa282_ead8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value() {
        // The standard check value: CRC-32C of ASCII "123456789" (RFC 3720 B.4; crcmod 'crc-32c').
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
        assert_eq!(
            masked_crc32c(b""),
            0u32.rotate_right(15).wrapping_add(0xa282_ead8)
        );
    }

    #[test]
    fn fields_decode_all_wire_types() {
        // field 1 varint 300, field 2 fixed32, field 3 bytes "ab", field 4 fixed64
        let mut msg = vec![0x08, 0xac, 0x02, 0x15];
        msg.extend(1.5f32.to_le_bytes());
        msg.extend([0x1a, 2, b'a', b'b', 0x21]);
        msg.extend(7u64.to_le_bytes());
        let got: Vec<_> = Fields::new(&msg).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            got,
            vec![
                (1, Wire::Varint(300)),
                (2, Wire::Fixed32(1.5f32.to_bits())),
                (3, Wire::Bytes(b"ab")),
                (4, Wire::Fixed64(7)),
            ]
        );
    }

    #[test]
    fn field_numbers_outside_one_to_two_to_the_29_are_refused() {
        // key 0x00: field 0, varint; key 0x07: field 0, wire type 7.
        for bad in [&[0x00, 0x01][..], &[0x02, 0x00]] {
            let err = Fields::new(bad).next().unwrap().unwrap_err();
            assert_eq!(err.offset, 0);
            assert!(err.what.contains("field number 0"), "{}", err.what);
        }
        // Field 2^29 - 1 (the largest) as a varint is accepted; 2^29 is not.
        let key = |n: u64| {
            let mut k = n << 3;
            let mut out = vec![];
            while k >= 0x80 {
                out.push((k as u8 & 0x7f) | 0x80);
                k >>= 7;
            }
            out.push(k as u8);
            out.push(0x01); // the varint value 1
            out
        };
        let max = (1u64 << 29) - 1;
        assert_eq!(
            Fields::new(&key(max)).next().unwrap().unwrap(),
            (max as u32, Wire::Varint(1))
        );
        let err = Fields::new(&key(max + 1)).next().unwrap().unwrap_err();
        assert!(err.what.contains("above 2^29"), "{}", err.what);
    }

    #[test]
    fn truncated_and_garbage_input_is_an_error_not_a_panic() {
        for bad in [&[0x1a, 5, b'a'][..], &[0x08, 0x80], &[0x0b], &[0xff; 12]] {
            let r: Result<Vec<_>, _> = Fields::new(bad).collect();
            assert!(r.is_err(), "{bad:?}");
        }
    }
}
