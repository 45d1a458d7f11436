//! Tests for the value module: every variant through MessagePack, JSON and serde, limits,
//! hostile input, and property tests.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use super::*;

fn map(entries: &[(&str, Value)]) -> Value {
    Value::Map(
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    )
}

fn date(y: i32, m: u8, d: u8) -> Date {
    Date::new(y, m, d).unwrap()
}

fn time(h: u8, m: u8, s: u8, ns: u32) -> Time {
    Time::new(h, m, s, ns).unwrap()
}

/// Structural equality that compares floats by bit pattern, so NaN equals itself.
fn bit_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
        (Value::List(x), Value::List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| bit_eq(a, b))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| ka == kb && bit_eq(va, vb))
        }
        _ => a == b,
    }
}

/// Equality where every NaN equals every other NaN (JSON does not keep payloads).
fn nan_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => {
            (x.is_nan() && y.is_nan()) || x.to_bits() == y.to_bits()
        }
        (Value::List(x), Value::List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| nan_eq(a, b))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| ka == kb && nan_eq(va, vb))
        }
        _ => a == b,
    }
}

fn samples() -> Vec<Value> {
    vec![
        Value::None,
        Value::Bool(true),
        Value::Bool(false),
        Value::from(0),
        Value::from(127),
        Value::from(128),
        Value::from(255),
        Value::from(256),
        Value::from(65_536),
        Value::from(u64::MAX),
        Value::from(-1),
        Value::from(-32),
        Value::from(-33),
        Value::from(-129),
        Value::from(-40_000),
        Value::from(i64::MIN),
        Value::from(i64::MAX),
        Value::Float(1.0),
        Value::Float(-0.0),
        Value::Float(1.5e300),
        Value::Float(f64::from_bits(1)),
        Value::Float(f64::MIN_POSITIVE),
        Value::Float(f64::INFINITY),
        Value::Float(f64::NEG_INFINITY),
        Value::Float(f64::NAN),
        Value::from(""),
        Value::from("héllo"),
        Value::from("x".repeat(40)),
        Value::from("y".repeat(300)),
        Value::from("z".repeat(70_000)),
        Value::bytes(vec![]),
        Value::bytes(vec![0, 1, 255]),
        Value::bytes(vec![7; 300]),
        Value::List(vec![]),
        Value::from(vec![Value::from(1), Value::from("a"), Value::None]),
        Value::from((0..20).collect::<Vec<i32>>()),
        map(&[]),
        map(&[("a", Value::from(1)), ("b", Value::from(vec![Value::None]))]),
        map(&[("$date", Value::from("not a date"))]),
        map(&[("$map", map(&[("$x", Value::from(1))]))]),
        map(&[("$weird", Value::bytes(vec![1]))]),
        Value::Map((0..20).map(|i| (format!("k{i}"), Value::from(i))).collect()),
        Value::Date(date(2026, 11, 24)),
        Value::Date(date(-44, 3, 15)),
        Value::Date(date(12_345, 1, 1)),
        Value::Date(date(2024, 2, 29)),
        Value::Time(time(0, 0, 0, 0)),
        Value::Time(time(23, 59, 59, 999_999_999)),
        Value::Time(time(12, 34, 56, 120_000_000)),
        Value::DateTime(DateTime::new(date(2026, 11, 24), time(12, 34, 56, 0), None).unwrap()),
        Value::DateTime(DateTime::new(date(2026, 11, 24), time(12, 34, 56, 5), Some(0)).unwrap()),
        Value::DateTime(
            DateTime::new(date(2026, 11, 24), time(1, 2, 3, 0), Some(5 * 3600 + 1800)).unwrap(),
        ),
        Value::DateTime(
            DateTime::new(date(1969, 12, 31), time(1, 2, 3, 0), Some(-(3600 + 61))).unwrap(),
        ),
        Value::Duration(Duration::ZERO),
        Value::Duration(Duration::new(1, 500_000_000).unwrap()),
        Value::Duration(Duration::new(-30, 0).unwrap()),
        Value::Duration(Duration::new(0, -5).unwrap()),
        Value::Duration(Duration::new(i64::MIN, 0).unwrap()),
        Value::Duration(Duration::new(i64::MAX, 999_999_999).unwrap()),
        Value::Opaque(Opaque::new("my:type", vec![1, 2, 3])),
        Value::Opaque(Opaque::new("", vec![])),
        Value::Opaque(Opaque::new("msgpack.ext.42", vec![9, 9])),
        Value::Opaque(Opaque::new("msgpack.ext.3", vec![9, 9])),
        Value::Opaque(Opaque::new("msgpack.ext.042", vec![9])),
    ]
}

#[test]
fn msgpack_round_trips_every_sample() {
    for v in samples() {
        let bytes = v.to_msgpack().unwrap();
        let back = Value::from_msgpack(&bytes).unwrap();
        assert!(bit_eq(&v, &back), "{v:?} came back as {back:?}");
    }
}

#[test]
fn json_round_trips_every_sample() {
    for v in samples() {
        let back = json::from_json(&json::to_json(&v)).unwrap();
        assert!(nan_eq(&v, &back), "{v:?} came back as {back:?}");
        let text = v.to_json_string();
        let back = Value::from_json_str(&text).unwrap();
        assert!(nan_eq(&v, &back), "{v:?} via {text} came back as {back:?}");
    }
}

#[test]
fn serde_json_round_trips_every_sample() {
    for v in samples() {
        let text = serde_json::to_string(&v).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            json::to_json(&v),
            "serde output differs from to_json for {v:?}"
        );
        let back: Value = serde_json::from_str(&text).unwrap();
        assert!(nan_eq(&v, &back), "{v:?} via {text} came back as {back:?}");
    }
}

#[test]
fn to_value_and_from_value_are_lossless_for_values() {
    for v in samples() {
        let via_to = to_value(&v).unwrap();
        assert!(bit_eq(&v, &via_to), "to_value: {v:?} became {via_to:?}");
        let via_from: Value = from_value(v.clone()).unwrap();
        assert!(
            bit_eq(&v, &via_from),
            "from_value: {v:?} became {via_from:?}"
        );
    }
}

#[test]
fn integers_use_the_smallest_form() {
    let cases: &[(Value, &[u8])] = &[
        (Value::from(0), &[0x00]),
        (Value::from(127), &[0x7f]),
        (Value::from(128), &[0xcc, 0x80]),
        (Value::from(256), &[0xcd, 0x01, 0x00]),
        (Value::from(65_536), &[0xce, 0, 1, 0, 0]),
        (Value::from(1u64 << 32), &[0xcf, 0, 0, 0, 1, 0, 0, 0, 0]),
        (Value::from(-1), &[0xff]),
        (Value::from(-32), &[0xe0]),
        (Value::from(-33), &[0xd0, 0xdf]),
        (Value::from(-129), &[0xd1, 0xff, 0x7f]),
        (Value::from(i64::MIN), &[0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0]),
        (Value::Float(1.0), &[0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]),
        (Value::None, &[0xc0]),
        (Value::from("a"), &[0xa1, b'a']),
        (Value::bytes(vec![1]), &[0xc4, 1, 1]),
    ];
    for (v, expected) in cases {
        assert_eq!(&v.to_msgpack().unwrap(), expected, "{v:?}");
    }
}

#[test]
fn integer_range_and_conversions() {
    assert_eq!(Value::from(u64::MAX).as_u64(), Some(u64::MAX));
    assert_eq!(Value::from(u64::MAX).as_i64(), None);
    assert_eq!(Value::from(i64::MIN).as_i64(), Some(i64::MIN));
    assert_eq!(Value::from(i64::MIN).as_u64(), None);
    assert_eq!(Integer::try_from(-1i128).unwrap().as_i64(), Some(-1));
    assert!(Integer::try_from(i128::from(u64::MAX) + 1).is_err());
    assert!(Integer::try_from(i128::from(i64::MIN) - 1).is_err());
    assert_eq!(Integer::MAX.to_i128(), i128::from(u64::MAX));
    assert!(Integer::from(-1) < Integer::from(0u8));
    assert!(Integer::MIN < Integer::from(i64::MIN + 1));
    assert!(Integer::from(i64::MAX) < Integer::from(u64::MAX));
    assert_eq!(Integer::from(5i8), Integer::from(5u64));
    assert_eq!(Integer::from(-7).to_string(), "-7");
    assert_eq!(format!("{:?}", Integer::from(3)), "Integer(3)");
    // Signed encodings of non-negative numbers decode to the same canonical integer.
    assert_eq!(
        Value::from_msgpack(&[0xd0, 0x05]).unwrap(),
        Value::from(5u8)
    );
}

#[test]
fn floats_are_bit_exact() {
    let bits = [
        0x7ff8_0000_0000_0001_u64, // NaN with a payload
        0xfff4_0000_0000_0000,     // negative signalling NaN
        0x8000_0000_0000_0000,     // -0.0
        0x0000_0000_0000_0001,     // smallest subnormal
        0x000f_ffff_ffff_ffff,     // largest subnormal
    ];
    for b in bits {
        let v = Value::Float(f64::from_bits(b));
        let back = Value::from_msgpack(&v.to_msgpack().unwrap()).unwrap();
        let Value::Float(f) = back else {
            panic!("not a float: {back:?}")
        };
        assert_eq!(f.to_bits(), b);
    }
    // float 32 is accepted on input.
    let back = Value::from_msgpack(&[0xca, 0x3f, 0xc0, 0, 0]).unwrap();
    assert_eq!(back, Value::Float(1.5));
    // JSON keeps 1.0 a float and -0.0 negative.
    assert_eq!(Value::Float(1.0).to_json_string(), "1.0");
    assert_eq!(Value::from_json_str("1.0").unwrap(), Value::Float(1.0));
    assert_eq!(Value::from_json_str("1").unwrap(), Value::from(1));
    let neg_zero = Value::from_json_str(&Value::Float(-0.0).to_json_string()).unwrap();
    assert_eq!(
        neg_zero.as_f64().map(f64::to_bits),
        Some((-0.0f64).to_bits())
    );
}

#[test]
fn dates_are_validated() {
    assert!(Date::new(2026, 2, 29).is_err());
    assert!(Date::new(2024, 2, 29).is_ok());
    assert!(Date::new(1900, 2, 29).is_err());
    assert!(Date::new(2000, 2, 29).is_ok());
    assert!(Date::new(2026, 4, 31).is_err());
    assert!(Date::new(2026, 13, 1).is_err());
    assert!(Date::new(2026, 0, 1).is_err());
    assert!(Date::new(2026, 1, 0).is_err());
    assert!(Time::new(24, 0, 0, 0).is_err());
    assert!(Time::new(0, 60, 0, 0).is_err());
    assert!(Time::new(0, 0, 60, 0).is_err());
    assert!(Time::new(0, 0, 0, 1_000_000_000).is_err());
    assert!(DateTime::new(date(2026, 1, 1), Time::MIDNIGHT, Some(86_400)).is_err());
    assert!(DateTime::new(date(2026, 1, 1), Time::MIDNIGHT, Some(-86_399)).is_ok());
    assert!(Duration::new(1, -1).is_err());
    assert!(Duration::new(-1, 1).is_err());
    assert!(Duration::new(0, 1_000_000_000).is_err());
    assert!(Duration::new(0, -999_999_999).is_ok());

    // Feb 30 in a date extension is rejected on decode.
    let bad_date = [0xd6, 0x01, 0, 0, 0x07, 0xea];
    assert!(matches!(
        Value::from_msgpack(&[0xc7, 6, 1, 0, 0, 0x07, 0xea, 2, 30]),
        Err(ValueError::InvalidDate(_))
    ));
    // Wrong payload length for a date.
    assert!(matches!(
        Value::from_msgpack(&bad_date),
        Err(ValueError::InvalidDate(_))
    ));
    // Feb 30 in JSON.
    assert!(matches!(
        Value::from_json_str(r#"{"$date": "2026-02-30"}"#),
        Err(ValueError::InvalidDate(_))
    ));
    // An invalid time in a date-time extension.
    let mut dt = Value::DateTime(DateTime::new(date(2026, 1, 1), Time::MIDNIGHT, None).unwrap())
        .to_msgpack()
        .unwrap();
    let hour_at = dt.len() - 7;
    dt[hour_at] = 24;
    assert!(matches!(
        Value::from_msgpack(&dt),
        Err(ValueError::InvalidDate(_))
    ));
    // A duration whose nanoseconds disagree in sign with its seconds.
    let mut bytes = vec![0xc7, 12, 4];
    bytes.extend_from_slice(&1i64.to_be_bytes());
    bytes.extend_from_slice(&(-1i32).to_be_bytes());
    assert!(matches!(
        Value::from_msgpack(&bytes),
        Err(ValueError::InvalidDate(_))
    ));
}

#[test]
fn text_forms() {
    assert_eq!(date(2026, 11, 24).to_string(), "2026-11-24");
    assert_eq!(date(-1, 1, 2).to_string(), "-0001-01-02");
    assert_eq!(date(10_000, 1, 2).to_string(), "+10000-01-02");
    assert_eq!(
        time(12, 34, 56, 123_456_789).to_string(),
        "12:34:56.123456789"
    );
    assert_eq!(time(12, 34, 56, 500_000_000).to_string(), "12:34:56.5");
    assert_eq!(time(12, 34, 56, 0).to_string(), "12:34:56");
    let dt = |offset| DateTime::new(date(2026, 11, 24), time(12, 34, 56, 0), offset).unwrap();
    assert_eq!(dt(Some(0)).to_string(), "2026-11-24T12:34:56Z");
    assert_eq!(dt(Some(19_800)).to_string(), "2026-11-24T12:34:56+05:30");
    assert_eq!(
        dt(Some(-19_801)).to_string(),
        "2026-11-24T12:34:56-05:30:01"
    );
    assert_eq!(dt(None).to_string(), "2026-11-24T12:34:56");
    assert_eq!(Duration::new(1, 500_000_000).unwrap().to_string(), "PT1.5S");
    assert_eq!(Duration::new(-30, 0).unwrap().to_string(), "-PT30S");
    assert_eq!(Duration::ZERO.to_string(), "PT0S");
    assert_eq!(Duration::new(0, -5).unwrap().to_string(), "-PT0.000000005S");

    assert_eq!(
        "2026-11-24T12:34:56+00:00".parse::<DateTime>().unwrap(),
        dt(Some(0))
    );
    for bad in [
        "2026-1-24",
        "20261-01-01",
        "2026-01-01x",
        "+2026-01-01T",
        "",
    ] {
        assert!(bad.parse::<Date>().is_err(), "{bad:?}");
    }
    for bad in [
        "12:34",
        "12:34:56.",
        "12:34:56.1234567890",
        "1:02:03",
        "12:34:56Z",
    ] {
        assert!(bad.parse::<Time>().is_err(), "{bad:?}");
    }
    for bad in [
        "2026-11-24 12:34:56",
        "2026-11-24T12:34:56+5:30",
        "2026-11-24T12:34:56+24:00",
        "2026-11-24T12:34:56ZZ",
    ] {
        assert!(bad.parse::<DateTime>().is_err(), "{bad:?}");
    }
    for bad in [
        "PT",
        "P1S",
        "PT1",
        "PT-1S",
        "PT1.S",
        "-PT99999999999999999999S",
        "pt1s",
    ] {
        assert!(bad.parse::<Duration>().is_err(), "{bad:?}");
    }
    assert_eq!(
        "-PT9223372036854775808S".parse::<Duration>().unwrap(),
        Duration::new(i64::MIN, 0).unwrap()
    );
    assert!("PT9223372036854775808S".parse::<Duration>().is_err());
}

#[test]
fn durations_convert_with_std() {
    let d = Duration::from(std::time::Duration::new(3, 7));
    assert_eq!((d.seconds(), d.nanoseconds()), (3, 7));
    assert_eq!(
        std::time::Duration::try_from(d).unwrap(),
        std::time::Duration::new(3, 7)
    );
    assert!(std::time::Duration::try_from(Duration::new(0, -1).unwrap()).is_err());
    assert_eq!(
        Duration::from(std::time::Duration::new(u64::MAX, 0)).seconds(),
        i64::MAX
    );
    assert_eq!(
        Duration::from_secs_f64(-1.5).unwrap(),
        Duration::new(-1, -500_000_000).unwrap()
    );
    assert_eq!(
        Duration::from_secs_f64(0.999_999_999_9).unwrap(),
        Duration::new(1, 0).unwrap()
    );
    assert!(Duration::from_secs_f64(f64::NAN).is_err());
    assert!(Duration::from_secs_f64(1e19).is_err());
}

#[test]
fn unix_time_conversions() {
    let epoch = DateTime::from_unix(0, 0).unwrap();
    assert_eq!(epoch.to_string(), "1970-01-01T00:00:00Z");
    let before = DateTime::from_unix(-1, 5).unwrap();
    assert_eq!(before.to_string(), "1969-12-31T23:59:59.000000005Z");
    assert_eq!(before.to_unix(), Some((-1, 5)));
    let t = DateTime::from_unix(1_795_000_000, 0).unwrap();
    assert_eq!(t.to_unix(), Some((1_795_000_000, 0)));
    let shifted = DateTime::new(t.date(), t.time(), Some(3600)).unwrap();
    assert_eq!(shifted.to_unix(), Some((1_795_000_000 - 3600, 0)));
    assert_eq!(
        DateTime::new(t.date(), t.time(), None).unwrap().to_unix(),
        None
    );
    assert!(DateTime::from_unix(i64::MAX, 0).is_err());
    for days in [
        -800_000_000,
        -719_468,
        -1,
        0,
        1,
        11_016,
        2_932_896,
        800_000_000,
    ] {
        let d = Date::from_days_since_unix_epoch(days).unwrap();
        assert_eq!(d.days_since_unix_epoch(), days, "{d}");
    }
}

#[test]
fn msgpack_timestamps_decode_as_utc() {
    // 32-bit form: 1 second after the epoch.
    let v = Value::from_msgpack(&[0xd6, 0xff, 0, 0, 0, 1]).unwrap();
    assert_eq!(v, Value::DateTime(DateTime::from_unix(1, 0).unwrap()));
    // 64-bit form: 2 seconds and 3 nanoseconds.
    let n: u64 = (3 << 34) | 2;
    let mut bytes = vec![0xd7, 0xff];
    bytes.extend_from_slice(&n.to_be_bytes());
    assert_eq!(
        Value::from_msgpack(&bytes).unwrap(),
        Value::DateTime(DateTime::from_unix(2, 3).unwrap())
    );
    // 96-bit form: before the epoch.
    let mut bytes = vec![0xc7, 12, 0xff];
    bytes.extend_from_slice(&7u32.to_be_bytes());
    bytes.extend_from_slice(&(-10i64).to_be_bytes());
    assert_eq!(
        Value::from_msgpack(&bytes).unwrap(),
        Value::DateTime(DateTime::from_unix(-10, 7).unwrap())
    );
    // Nanoseconds out of range, wrong length.
    let mut bytes = vec![0xc7, 12, 0xff];
    bytes.extend_from_slice(&1_000_000_000u32.to_be_bytes());
    bytes.extend_from_slice(&0i64.to_be_bytes());
    assert!(Value::from_msgpack(&bytes).is_err());
    assert!(Value::from_msgpack(&[0xd5, 0xff, 0, 0]).is_err());
}

#[test]
fn unknown_ext_types_round_trip_as_opaque() {
    let bytes = [0xd5, 42, 0xab, 0xcd];
    let v = Value::from_msgpack(&bytes).unwrap();
    assert_eq!(
        v,
        Value::Opaque(Opaque::new("msgpack.ext.42", vec![0xab, 0xcd]))
    );
    assert_eq!(v.to_msgpack().unwrap(), bytes);
    let negative = [0xd4, 0x80, 7];
    let v = Value::from_msgpack(&negative).unwrap();
    assert_eq!(v, Value::Opaque(Opaque::new("msgpack.ext.-128", vec![7])));
    assert_eq!(v.to_msgpack().unwrap(), negative);
}

#[test]
fn non_string_map_keys_are_unsupported() {
    let err = Value::from_msgpack(&[0x81, 0x01, 0xc0]).unwrap_err();
    assert!(matches!(err, ValueError::Unsupported(_)), "{err}");
    assert!(
        err.to_string().contains("map key must be a string"),
        "{err}"
    );
    let dup = [0x82, 0xa1, b'a', 0x01, 0xa1, b'a', 0x02];
    assert!(matches!(
        Value::from_msgpack(&dup),
        Err(ValueError::Unsupported(_))
    ));
}

#[test]
fn malformed_msgpack_is_rejected() {
    assert_eq!(Value::from_msgpack(&[]), Err(ValueError::Truncated));
    assert!(matches!(
        Value::from_msgpack(&[0xc1]),
        Err(ValueError::Unsupported(_))
    ));
    assert_eq!(
        Value::from_msgpack(&[0xc0, 0xc0, 0xc0]),
        Err(ValueError::TrailingBytes { extra: 2 })
    );
    assert_eq!(
        Value::from_msgpack(&[0xa2, 0xff, 0xfe]),
        Err(ValueError::InvalidUtf8)
    );
    // Opaque whose name length runs past the payload.
    assert!(Value::from_msgpack(&[0xd5, 5, 0, 9]).is_err());
}

fn nested_lists(levels: usize) -> Value {
    let mut v = Value::None;
    for _ in 0..levels {
        v = Value::List(vec![v]);
    }
    v
}

fn nested_maps(levels: usize) -> Value {
    let mut v = Value::None;
    for _ in 0..levels {
        v = map(&[("k", v)]);
    }
    v
}

#[test]
fn depth_limit() {
    let limits = Limits::default();
    assert_eq!(limits, Limits::DEFAULT);
    assert_eq!(limits.max_depth, 64);
    assert_eq!(limits.max_size, 16 * 1024 * 1024);
    let too_deep = ValueError::TooDeep { limit: 64 };
    assert_eq!(
        too_deep.to_string(),
        "value nested deeper than the limit of 64 levels"
    );

    for (ok, bad) in [
        (nested_lists(64), nested_lists(65)),
        (nested_maps(64), nested_maps(65)),
    ] {
        let bytes = ok.to_msgpack().unwrap();
        assert_eq!(Value::from_msgpack(&bytes).unwrap(), ok);
        assert_eq!(bad.to_msgpack(), Err(too_deep.clone()));
        let bad_bytes = encode(
            &bad,
            &Limits {
                max_depth: 65,
                ..Limits::DEFAULT
            },
        )
        .unwrap();
        assert_eq!(Value::from_msgpack(&bad_bytes), Err(too_deep.clone()));

        assert_eq!(Value::from_json_str(&ok.to_json_string()).unwrap(), ok);
        assert_eq!(
            Value::from_json_str(&bad.to_json_string()),
            Err(too_deep.clone())
        );
        assert_eq!(json::from_json(&json::to_json(&bad)), Err(too_deep.clone()));
    }

    // Hostile input: a million nested array headers must fail fast, not overflow the stack.
    let hostile = vec![0x91; 1_000_000];
    assert_eq!(Value::from_msgpack(&hostile), Err(too_deep.clone()));

    // `$map` wrappers do not count as a level of their own.
    let mut v = Value::None;
    for _ in 0..64 {
        v = map(&[("$k", v)]);
    }
    assert_eq!(json::from_json(&json::to_json(&v)).unwrap(), v);
}

#[test]
fn size_limit() {
    let limits = Limits {
        max_depth: 64,
        max_size: 10,
    };
    let big = Value::from("x".repeat(20));
    assert!(matches!(
        encode(&big, &limits),
        Err(ValueError::TooLarge { limit: 10, .. })
    ));
    let bytes = big.to_msgpack().unwrap();
    assert_eq!(
        decode(&bytes, &limits),
        Err(ValueError::TooLarge {
            size: 21,
            limit: 10
        })
    );
    // Exactly at the limit is fine.
    let fits = Value::from("x".repeat(9));
    assert_eq!(encode(&fits, &limits).unwrap().len(), 10);
    // encode_into appends, and leaves the buffer alone on failure.
    let mut out = vec![1, 2, 3];
    encode_into(&fits, &mut out, &limits).unwrap();
    assert_eq!(out.len(), 13);
    assert!(encode_into(&big, &mut out, &limits).is_err());
    assert_eq!(out.len(), 13);
    assert!(matches!(
        json::from_json_str_with_limits(r#""a long string""#, &limits),
        Err(ValueError::TooLarge { .. })
    ));
}

#[test]
fn every_truncation_is_an_error() {
    let v = Value::from(samples());
    let bytes = v.to_msgpack().unwrap();
    for len in 0..bytes.len() {
        assert!(
            Value::from_msgpack(&bytes[..len]).is_err(),
            "prefix of {len} bytes decoded"
        );
    }
}

#[test]
fn huge_declared_lengths_do_not_allocate() {
    for bytes in [
        &[0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0][..],
        &[0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, b'a', 0xc0][..],
        &[0xdb, 0xff, 0xff, 0xff, 0xff, b'a'][..],
        &[0xc6, 0xff, 0xff, 0xff, 0xff, 0][..],
        &[0xc9, 0xff, 0xff, 0xff, 0xff, 5, 0][..],
    ] {
        assert_eq!(Value::from_msgpack(bytes), Err(ValueError::Truncated));
    }
    // Every nesting level claims four billion elements over a megabyte of real input.
    let mut bytes = [0xdd, 0xff, 0xff, 0xff, 0xff].repeat(60);
    bytes.extend(std::iter::repeat_n(0xc0, 1 << 20));
    assert_eq!(Value::from_msgpack(&bytes), Err(ValueError::Truncated));
}

#[test]
fn json_mapping_shapes() {
    let cases = [
        (Value::None, "null"),
        (Value::from(u64::MAX), "18446744073709551615"),
        (Value::from(i64::MIN), "-9223372036854775808"),
        (Value::Float(f64::NAN), r#"{"$float":"NaN"}"#),
        (Value::Float(f64::NEG_INFINITY), r#"{"$float":"-Infinity"}"#),
        (Value::bytes(b"hi".to_vec()), r#"{"$bytes":"aGk="}"#),
        (Value::Date(date(2026, 11, 24)), r#"{"$date":"2026-11-24"}"#),
        (
            Value::Time(time(12, 34, 56, 123_456_789)),
            r#"{"$time":"12:34:56.123456789"}"#,
        ),
        (
            Value::Duration(Duration::new(1, 500_000_000).unwrap()),
            r#"{"$duration":"PT1.5S"}"#,
        ),
        (
            Value::Opaque(Opaque::new("my:type", b"hi".to_vec())),
            r#"{"$opaque":{"data":"aGk=","type":"my:type"}}"#,
        ),
        (
            map(&[("$date", Value::from("x"))]),
            r#"{"$map":{"$date":"x"}}"#,
        ),
        (
            map(&[("$a", Value::from(1)), ("b", Value::from(2))]),
            r#"{"$a":1,"b":2}"#,
        ),
    ];
    for (v, text) in cases {
        assert_eq!(v.to_json_string(), text);
        assert_eq!(v.to_string(), text);
        assert!(nan_eq(&Value::from_json_str(text).unwrap(), &v), "{text}");
    }
    // Larger-than-u64 integers become floats; durations accept plain seconds.
    assert_eq!(
        Value::from_json_str("18446744073709551616").unwrap(),
        Value::Float(18_446_744_073_709_551_616.0)
    );
    assert_eq!(
        Value::from_json_str(r#"{"$duration": 2.25}"#).unwrap(),
        Value::Duration(Duration::new(2, 250_000_000).unwrap())
    );
    assert_eq!(
        Value::from_json_str(r#"{"$duration": -3}"#).unwrap(),
        Value::Duration(Duration::new(-3, 0).unwrap())
    );
    for bad in [
        r#"{"$unknown": 1}"#,
        r#"{"$bytes": "***"}"#,
        r#"{"$bytes": 1}"#,
        r#"{"$map": 1}"#,
        r#"{"$float": "nan"}"#,
        r#"{"$opaque": {"type": "t"}}"#,
        r#"{"$opaque": {"type": "t", "data": "", "x": 1}}"#,
        r#"{"$datetime": "2026-11-24"}"#,
        "[1,",
    ] {
        assert!(Value::from_json_str(bad).is_err(), "{bad}");
    }
}

#[test]
fn accessors_and_conversions() {
    assert_eq!(Value::from(true).as_bool(), Some(true));
    assert_eq!(Value::from(2.5f32).as_f64(), Some(2.5));
    assert_eq!(Value::from(3).as_f64(), Some(3.0));
    assert_eq!(Value::from("s").as_str(), Some("s"));
    assert_eq!(Value::bytes(*b"ab").as_bytes(), Some(&b"ab"[..]));
    assert_eq!(
        Value::from(vec![1u8, 2]).as_list(),
        Some(&[Value::from(1), Value::from(2)][..])
    );
    assert_eq!(Value::from(None::<i32>), Value::None);
    assert_eq!(Value::from(Some("x")), Value::from("x"));
    assert!(Value::None.is_none());
    assert!(Value::default().is_none());
    let m: BTreeMap<String, i32> = [("a".to_owned(), 1)].into();
    assert_eq!(Value::from(m).as_map().map(BTreeMap::len), Some(1));
    assert_eq!(
        Value::from(std::time::Duration::from_millis(1500)),
        Value::Duration(Duration::new(1, 500_000_000).unwrap())
    );
    let names: Vec<&str> = samples().iter().map(Value::type_name).collect();
    for name in [
        "none", "bool", "int", "float", "string", "bytes", "list", "map", "date", "time",
        "datetime", "duration", "opaque",
    ] {
        assert!(names.contains(&name), "{name}");
    }
    let collected: Value = (1..=3).collect();
    assert_eq!(collected.as_list().map(<[Value]>::len), Some(3));
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Shape {
    Empty,
    Circle(f64),
    Point(i32, i32),
    Rect { w: u32, h: u32 },
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Inner {
    name: String,
    tags: Vec<String>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Outer {
    id: u64,
    neg: i8,
    ratio: f32,
    flag: bool,
    letter: char,
    inner: Inner,
    maybe: Option<i32>,
    nothing: Option<String>,
    shapes: Vec<Shape>,
    raw: Vec<u8>,
    pair: (u8, String),
    unit: (),
    by_id: BTreeMap<u32, String>,
    extra: Value,
    big: u128,
}

fn sample_outer() -> Outer {
    Outer {
        id: u64::MAX,
        neg: -5,
        ratio: 0.5,
        flag: true,
        letter: 'é',
        inner: Inner {
            name: "n".to_owned(),
            tags: vec!["a".to_owned(), "b".to_owned()],
        },
        maybe: Some(3),
        nothing: None,
        shapes: vec![
            Shape::Empty,
            Shape::Circle(1.5),
            Shape::Point(1, -2),
            Shape::Rect { w: 3, h: 4 },
        ],
        raw: vec![1, 2, 3],
        pair: (7, "seven".to_owned()),
        unit: (),
        by_id: [(1, "one".to_owned()), (20, "twenty".to_owned())].into(),
        extra: Value::from(samples()),
        big: 12,
    }
}

#[test]
fn typed_struct_round_trip() {
    let outer = sample_outer();
    let v = to_value(&outer).unwrap();
    let m = v.as_map().unwrap();
    assert_eq!(m["id"], Value::from(u64::MAX));
    assert_eq!(m["nothing"], Value::None);
    assert_eq!(m["letter"], Value::from("é"));
    assert_eq!(m["raw"], Value::from(vec![1u8, 2, 3]));
    assert_eq!(m["unit"], Value::None);
    assert_eq!(
        m["shapes"],
        Value::from(vec![
            Value::from("Empty"),
            map(&[("Circle", Value::Float(1.5))]),
            map(&[("Point", Value::from(vec![1, -2]))]),
            map(&[("Rect", map(&[("w", Value::from(3)), ("h", Value::from(4))]))]),
        ])
    );
    assert_eq!(
        m["by_id"],
        map(&[("1", Value::from("one")), ("20", Value::from("twenty"))])
    );
    assert!(bit_eq(&m["extra"], &outer.extra));

    let back: Outer = from_value(v.clone()).unwrap();
    assert_eq!(back.inner, outer.inner);
    assert_eq!(back.shapes, outer.shapes);
    assert_eq!(back.by_id, outer.by_id);
    assert!(bit_eq(&back.extra, &outer.extra));
    let back_ref: Outer = from_value_ref(&v).unwrap();
    assert_eq!(back_ref.raw, outer.raw);

    // Through msgpack and JSON text as well.
    let via_msgpack = Value::from_msgpack(&v.to_msgpack().unwrap()).unwrap();
    let back: Outer = from_value(via_msgpack).unwrap();
    assert_eq!(back.pair, outer.pair);
    let text = serde_json::to_string(&outer).unwrap();
    let back: Outer = serde_json::from_str(&text).unwrap();
    assert!(nan_eq(&back.extra, &outer.extra));
}

#[test]
fn serde_bridge_details() {
    // Bytes go to Vec<u8> fields; dates go to string fields.
    let raw: Vec<u8> = from_value(Value::bytes(vec![4, 5])).unwrap();
    assert_eq!(raw, vec![4, 5]);
    let s: String = from_value(Value::Date(date(2026, 11, 24))).unwrap();
    assert_eq!(s, "2026-11-24");
    let d: String = from_value(Value::Duration(Duration::new(-30, 0).unwrap())).unwrap();
    assert_eq!(d, "-PT30S");
    // serde_json::Value sees the JSON mapping.
    let j: serde_json::Value = from_value(Value::Date(date(2026, 11, 24))).unwrap();
    assert_eq!(j, serde_json::json!({"$date": "2026-11-24"}));
    // Enum errors are errors, not panics.
    assert!(from_value::<Shape>(Value::from(3)).is_err());
    assert!(from_value::<Shape>(map(&[("Nope", Value::None)])).is_err());
    assert!(from_value::<u8>(Value::from(300)).is_err());
    assert_eq!(
        from_value::<i128>(Value::from(i64::MIN)).unwrap(),
        i128::from(i64::MIN)
    );
    assert_eq!(from_value::<f64>(Value::from(2)).unwrap(), 2.0);
    // Struct fields named like special forms stay plain.
    #[derive(Debug, PartialEq, Deserialize, Serialize)]
    struct Dollar {
        #[serde(rename = "$date")]
        d: String,
    }
    let v = to_value(&Dollar { d: "x".to_owned() }).unwrap();
    assert_eq!(v, map(&[("$date", Value::from("x"))]));
    assert_eq!(
        from_value::<Dollar>(v).unwrap(),
        Dollar { d: "x".to_owned() }
    );
    // Keys that cannot be strings are rejected.
    let bad: BTreeMap<Vec<u8>, u8> = [(vec![1], 1)].into();
    assert!(matches!(to_value(&bad), Err(ValueError::Serde(_))));
    assert!(to_value(&u128::MAX).is_err());
    assert_eq!(to_value(&-1i128).unwrap(), Value::from(-1));
}

fn arb_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::None),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<u64>().prop_map(|b| Value::Float(f64::from_bits(b))),
        any::<f64>().prop_map(Value::Float),
        ".{0,20}".prop_map(Value::String),
        proptest::collection::vec(any::<u8>(), 0..20).prop_map(Value::Bytes),
        (any::<i32>(), 1u8..=12, 1u8..=31)
            .prop_filter_map("valid date", |(y, m, d)| Date::new(y, m, d).ok())
            .prop_map(Value::Date),
        arb_time().prop_map(Value::Time),
        (
            (any::<i32>(), 1u8..=12, 1u8..=28),
            arb_time(),
            proptest::option::of(-86_399i32..86_400)
        )
            .prop_map(|((y, m, d), t, off)| {
                Value::DateTime(DateTime::new(date(y, m, d), t, off).unwrap())
            }),
        (any::<i64>(), 0i32..1_000_000_000).prop_map(|(s, n)| {
            let n = if s < 0 { -n } else { n };
            Value::Duration(Duration::new(s, n).unwrap())
        }),
        (".{0,10}", proptest::collection::vec(any::<u8>(), 0..10))
            .prop_map(|(t, d)| Value::Opaque(Opaque::new(t, d))),
        (any::<i8>(), proptest::collection::vec(any::<u8>(), 0..10))
            .prop_map(|(n, d)| Value::Opaque(Opaque::new(format!("msgpack.ext.{n}"), d))),
    ]
}

fn arb_time() -> impl Strategy<Value = Time> {
    (0u8..24, 0u8..60, 0u8..60, 0u32..1_000_000_000).prop_map(|(h, m, s, n)| time(h, m, s, n))
}

fn arb_value() -> impl Strategy<Value = Value> {
    arb_leaf().prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::List),
            proptest::collection::btree_map("[$a-c]{0,3}", inner, 0..8).prop_map(Value::Map),
        ]
    })
}

/// Opaque values named after a reserved extension type (`msgpack.ext.-1`, `msgpack.ext.1`…)
/// are written as ext 5 with their name, so they round-trip too.
fn msgpack_round_trips(v: &Value) -> bool {
    let bytes = v.to_msgpack().unwrap();
    bit_eq(&Value::from_msgpack(&bytes).unwrap(), v)
}

proptest! {
    #[test]
    fn prop_msgpack_round_trip(v in arb_value()) {
        prop_assert!(msgpack_round_trips(&v), "{:?}", v);
    }

    #[test]
    fn prop_json_round_trip(v in arb_value()) {
        let back = json::from_json(&json::to_json(&v)).unwrap();
        prop_assert!(nan_eq(&back, &v), "{:?} became {:?}", v, back);
        let back = Value::from_json_str(&v.to_json_string()).unwrap();
        prop_assert!(nan_eq(&back, &v), "{:?} became {:?}", v, back);
    }

    #[test]
    fn prop_serde_round_trip(v in arb_value()) {
        prop_assert!(bit_eq(&to_value(&v).unwrap(), &v));
        let back: Value = from_value(v.clone()).unwrap();
        prop_assert!(bit_eq(&back, &v));
    }

    #[test]
    fn prop_decode_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = Value::from_msgpack(&bytes);
    }

    #[test]
    fn prop_decode_mutated_encodings_never_panics(
        v in arb_value(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = v.to_msgpack().unwrap();
        for (at, byte) in flips {
            if !bytes.is_empty() {
                let at = at % bytes.len();
                bytes[at] = byte;
            }
        }
        if let Ok(decoded) = Value::from_msgpack(&bytes) {
            // Whatever decodes must encode again.
            prop_assert!(decoded.to_msgpack().is_ok());
        }
    }

    #[test]
    fn prop_text_forms_round_trip(v in arb_leaf()) {
        match v {
            Value::Date(d) => prop_assert_eq!(d.to_string().parse::<Date>().unwrap(), d),
            Value::Time(t) => prop_assert_eq!(t.to_string().parse::<Time>().unwrap(), t),
            Value::DateTime(dt) => {
                prop_assert_eq!(dt.to_string().parse::<DateTime>().unwrap(), dt);
            }
            Value::Duration(d) => {
                prop_assert_eq!(d.to_string().parse::<Duration>().unwrap(), d);
            }
            _ => {}
        }
    }
}
