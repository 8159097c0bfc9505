//! Just enough DER (X.690) to write an X.509 CRL ([`super::sm2`]): definite lengths, unsigned
//! INTEGERs, and the two X.509 time forms. Encoding only, never parsing (x509-parser reads), and
//! no cryptography (Tongsuo signs).
//!
//! Every value is built as a complete TLV in a `Vec<u8>`; a constructed value is the
//! concatenation of its parts. CRLs are small, so the copies cost nothing that matters.

use time::OffsetDateTime;

/// Universal tags used here.
pub(super) const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
pub(super) const OCTET_STRING: u8 = 0x04;
pub(super) const ENUMERATED: u8 = 0x0a;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const SEQUENCE: u8 = 0x30;

/// One value: `tag`, the definite length of `content` (short form below 128, long form above),
/// then `content`.
pub(super) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = Vec::with_capacity(len + 6);
    out.push(tag);
    if len < 0x80 {
        // Fits in 7 bits: the length is its own octet.
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let first = bytes
            .iter()
            .position(|b| *b != 0)
            .unwrap_or(bytes.len() - 1);
        let count = bytes.len() - first;
        // At most size_of::<usize>() == 8 length octets, so the count fits in 7 bits.
        out.push(0x80 | count as u8);
        out.extend_from_slice(&bytes[first..]);
    }
    out.extend_from_slice(content);
    out
}

/// `SEQUENCE { parts... }`.
pub(super) fn sequence(parts: &[&[u8]]) -> Vec<u8> {
    tlv(SEQUENCE, &parts.concat())
}

/// A context-specific constructed tag `[n]` (EXPLICIT) around `inner`.
pub(super) fn explicit(n: u8, inner: &[u8]) -> Vec<u8> {
    tlv(0xa0 | n, inner)
}

/// A context-specific primitive tag `[n]` (IMPLICIT) with `content`.
pub(super) fn implicit(n: u8, content: &[u8]) -> Vec<u8> {
    tlv(0x80 | n, content)
}

/// A non-negative INTEGER (or ENUMERATED, by `tag`) from big-endian magnitude bytes: leading
/// zeros removed, one zero added back when the top bit is set (DER's minimal two's complement),
/// and zero written as one zero octet.
pub(super) fn unsigned(tag: u8, magnitude: &[u8]) -> Vec<u8> {
    let first = magnitude.iter().position(|b| *b != 0);
    let digits = first.map_or(&[][..], |i| &magnitude[i..]);
    let mut content = Vec::with_capacity(digits.len() + 1);
    if digits.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(digits);
    tlv(tag, &content)
}

/// `BIT STRING` of whole octets (no unused bits), as a signature is.
pub(super) fn bit_string(bytes: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(bytes.len() + 1);
    content.push(0);
    content.extend_from_slice(bytes);
    tlv(BIT_STRING, &content)
}

/// X.509 `Time` (RFC 5280 §4.1.2.5 and §5.1.2.4): UTCTime `YYMMDDHHMMSSZ` for the years 1950
/// to 2049, GeneralizedTime `YYYYMMDDHHMMSSZ` otherwise; whole seconds, always UTC.
pub(super) fn time(t: OffsetDateTime) -> Vec<u8> {
    let t = t.to_offset(time::UtcOffset::UTC);
    let rest = format!(
        "{:02}{:02}{:02}{:02}{:02}Z",
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let year = t.year();
    if (1950..2050).contains(&year) {
        tlv(UTC_TIME, format!("{:02}{rest}", year % 100).as_bytes())
    } else {
        tlv(GENERALIZED_TIME, format!("{year:04}{rest}").as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_use_the_short_form_below_128_and_the_minimal_long_form_above() {
        assert_eq!(tlv(OCTET_STRING, &[]), [0x04, 0x00]);
        assert_eq!(tlv(OCTET_STRING, &[7; 127])[..2], [0x04, 0x7f]);
        assert_eq!(tlv(OCTET_STRING, &[7; 128])[..3], [0x04, 0x81, 0x80]);
        assert_eq!(tlv(OCTET_STRING, &[7; 255])[..3], [0x04, 0x81, 0xff]);
        assert_eq!(tlv(OCTET_STRING, &[7; 256])[..4], [0x04, 0x82, 0x01, 0x00]);
        let big = tlv(OCTET_STRING, &vec![7; 70_000]);
        assert_eq!(big[..5], [0x04, 0x83, 0x01, 0x11, 0x70]);
        assert_eq!(big.len(), 70_005);
    }

    #[test]
    fn integers_are_minimal_and_never_negative() {
        assert_eq!(unsigned(INTEGER, &[]), [0x02, 0x01, 0x00]);
        assert_eq!(unsigned(INTEGER, &[0, 0, 0]), [0x02, 0x01, 0x00]);
        assert_eq!(unsigned(INTEGER, &[0, 0, 1]), [0x02, 0x01, 0x01]);
        assert_eq!(unsigned(INTEGER, &[0x7f]), [0x02, 0x01, 0x7f]);
        assert_eq!(unsigned(INTEGER, &[0x80]), [0x02, 0x02, 0x00, 0x80]);
        assert_eq!(
            unsigned(INTEGER, &[0, 0xff, 0x01]),
            [0x02, 0x03, 0x00, 0xff, 0x01]
        );
        assert_eq!(unsigned(ENUMERATED, &[1]), [0x0a, 0x01, 0x01]);
    }

    #[test]
    fn constructed_and_tagged_values() {
        let two = [0x05, 0x00];
        assert_eq!(
            sequence(&[&two, &two]),
            [0x30, 0x04, 0x05, 0x00, 0x05, 0x00]
        );
        assert_eq!(explicit(0, &two), [0xa0, 0x02, 0x05, 0x00]);
        assert_eq!(implicit(0, &[1, 2]), [0x80, 0x02, 0x01, 0x02]);
        assert_eq!(bit_string(&[0xab]), [0x03, 0x02, 0x00, 0xab]);
    }

    #[test]
    fn times_switch_to_generalized_time_in_2050() -> Result<(), time::error::ComponentRange> {
        let t = OffsetDateTime::from_unix_timestamp(1_764_979_205)?; // 2025-12-06 00:00:05 UTC
        assert_eq!(time(t), [&[0x17, 13][..], b"251206000005Z"].concat());
        let t = OffsetDateTime::from_unix_timestamp(2_524_608_000)?; // 2050-01-01 00:00:00 UTC
        assert_eq!(time(t), [&[0x18, 15][..], b"20500101000000Z"].concat());
        let t = OffsetDateTime::from_unix_timestamp(-631_152_001)?; // 1949-12-31 23:59:59 UTC
        assert_eq!(time(t), [&[0x18, 15][..], b"19491231235959Z"].concat());
        Ok(())
    }
}
