//! The key encoding. Both backends are held to one contract in `tests/tests/store_backends.rs`.

use super::*;

#[test]
fn key_order_is_tuple_order() {
    let tuples: Vec<(&str, u8, u64)> = vec![
        ("", 0, 0),
        ("a", 0, 0),
        ("a", 0, 1),
        ("a", 0, u64::MAX),
        ("a", 1, 0),
        ("a\0", 0, 0),
        ("a\0\0", 0, 0),
        ("a\u{1}", 0, 0),
        ("ab", 0, 0),
        ("b", 0, 0),
        ("\u{ff}", 0, 0),
    ];
    let keys: Vec<Vec<u8>> = tuples
        .iter()
        .map(|(s, p, n)| Key::new().str(s).u8(*p).u64(*n).finish())
        .collect();
    for (i, pair) in keys.windows(2).enumerate() {
        assert!(pair[0] < pair[1], "{:?} !< {:?}", tuples[i], tuples[i + 1]);
    }
    for (k, (s, p, n)) in keys.iter().zip(&tuples) {
        let mut r = KeyReader::new(k);
        assert_eq!(r.str().unwrap(), *s);
        assert_eq!(r.u8().unwrap(), *p);
        assert_eq!(r.u64().unwrap(), *n);
        r.end().unwrap();
    }
}

#[test]
fn a_string_field_is_never_a_prefix_of_another() {
    let a = Key::new().str("a").finish();
    let range = KeyRange::prefix(a);
    assert!(range.contains(&Key::new().str("a").u8(9).finish()));
    assert!(!range.contains(&Key::new().str("ab").finish()));
    assert!(!range.contains(&Key::new().str("a\0").finish()));
}

#[test]
fn a_damaged_key_is_a_decode_error() {
    for bad in [&[0x61u8, 0x00][..], &[0x61, 0x00, 0x01], &[0x61]] {
        let err = KeyReader::new(bad).str().unwrap_err();
        assert!(err.to_string().contains("string field"), "{err}");
    }
    let mut r = KeyReader::new(&[1, 2]);
    assert!(r.u64().unwrap_err().to_string().contains("eight-byte"));
    let mut r = KeyReader::new(&[1, 2]);
    r.u8().unwrap();
    assert!(r.end().unwrap_err().to_string().contains("trailing"));
}

#[test]
fn the_successor_of_a_prefix_bounds_it() {
    assert_eq!(successor(&[1, 2]), Some(vec![1, 3]));
    assert_eq!(successor(&[1, 0xFF]), Some(vec![2]));
    assert_eq!(successor(&[0xFF, 0xFF]), None);
    assert_eq!(KeyRange::prefix(vec![0xFF]).end, Bound::Unbounded);
}
