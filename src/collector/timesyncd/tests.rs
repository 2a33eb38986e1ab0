#![allow(clippy::many_single_char_names)]
use std::collections::HashMap;

use zbus::zvariant::{OwnedValue, Value};

use super::reading::{self, FRESHNESS_GRACE_SECONDS, NtpMessage, PHI};
use super::*;
use crate::collector::assert_declared;
use crate::metrics::{Desc, Family, find};
use crate::model::{
    PEER_ERROR_BOUND, PEER_INFO, PEER_OFFSET, PEER_STATE_CODE, SYNC_LEAP, SYNC_OFFSET,
    SYNC_STRATUM, USABLE_SOURCES, WORST_CASE_ERROR,
};
use crate::sys::dbus::Properties;

/// What a real timesyncd 252.39 published (busctl get-property, captured in
/// the lab against a chronyd `local stratum 8` on 127.0.0.1): leap 0,
/// version 4, mode 4, stratum 8, precision -25, root delay and dispersion
/// 0, refid 7F7F0101, T1..T4, no spike, one packet, jitter 0.
fn captured() -> NtpMessage {
    NtpMessage {
        leap: 0,
        version: 4,
        mode: 4,
        stratum: 8,
        precision: -25,
        root_delay_us: 0,
        root_dispersion_us: 0,
        refid: [127, 127, 1, 1],
        origin_us: 1_796_245_460_630_811,
        receive_us: 1_796_245_460_630_850,
        transmit_us: 1_796_245_460_630_992,
        destination_us: 1_796_245_460_631_003,
        spike: false,
        packet_count: 1,
        jitter_us: 0,
    }
}

fn owned(v: Value<'_>) -> OwnedValue {
    v.try_into_owned().expect("owned value")
}

fn message_value(m: &NtpMessage) -> OwnedValue {
    owned(Value::from((
        m.leap,
        m.version,
        m.mode,
        m.stratum,
        m.precision,
        m.root_delay_us,
        m.root_dispersion_us,
        m.refid.to_vec(),
        m.origin_us,
        m.receive_us,
        m.transmit_us,
        m.destination_us,
        m.spike,
        m.packet_count,
        m.jitter_us,
    )))
}

/// `NTPMessage` with its fields edited.
fn edited(m: &NtpMessage, edit: impl FnOnce(&mut Vec<Value<'static>>)) -> OwnedValue {
    let Value::Structure(s) = Value::from(message_value(m)) else {
        unreachable!("NTPMessage is a structure")
    };
    let mut fields = s.into_fields();
    edit(&mut fields);
    let mut b = zbus::zvariant::StructureBuilder::new();
    for f in fields {
        b.push_value(f);
    }
    owned(Value::Structure(b.build().expect("structure")))
}

fn address_value(family: i32, bytes: &[u8]) -> OwnedValue {
    owned(Value::from((family, bytes.to_vec())))
}

/// timesyncd's properties as GetAll gives them, polling every 32 s.
fn properties(m: &NtpMessage) -> Properties {
    let mut p: Properties = HashMap::new();
    p.insert("NTPMessage".into(), message_value(m));
    p.insert("ServerAddress".into(), address_value(2, &[127, 0, 0, 1]));
    p.insert("ServerName".into(), owned(Value::from("127.0.0.1")));
    p.insert("PollIntervalUSec".into(), owned(Value::U64(32_000_000)));
    p.insert("RootDistanceMaxUSec".into(), owned(Value::U64(5_000_000)));
    p.insert("Frequency".into(), owned(Value::I64(-655_360)));
    p.insert(
        "SystemNTPServers".into(),
        owned(Value::from(vec!["127.0.0.1"])),
    );
    p
}

/// Read `age` seconds after T4.
fn read(p: &Properties, m: &NtpMessage, age: f64) -> Reading {
    Reading::decode(p, m.destination_us as f64 * 1e-6 + age).expect("decodes")
}

fn value(f: &[Family], d: &'static Desc, labels: &[&str]) -> Option<f64> {
    find(f, d).and_then(|x| x.value(labels))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn the_captured_reply_is_a_synchronised_server() {
    let m = captured();
    let r = read(&properties(&m), &m, 4.0);
    // T2 − T1 = 39 µs, T3 − T4 = −11 µs: θ = 14 µs; δ = 192 − 142 = 50 µs.
    assert!(close(r.message.offset_seconds(), 14e-6));
    assert!(close(r.message.delay_seconds(), 50e-6));
    assert_eq!(r.server_address, Some("127.0.0.1".parse().expect("ip")));
    assert_eq!(r.poll_interval_seconds, 32.0);
    assert_eq!(r.frequency, Some(-655_360));
    assert!(r.synchronized());

    let f = r.families();
    assert_declared(&REGISTRATION, &f);
    let d = ["timesyncd"];
    let p = ["timesyncd", "127.0.0.1"];
    assert!(close(value(&f, &SYNC_OFFSET, &d).expect("offset"), 14e-6));
    assert_eq!(
        value(&f, &SYNC_STRATUM, &d),
        Some(9.0),
        "one below its server"
    );
    assert_eq!(value(&f, &SYNC_LEAP, &d), Some(0.0));
    assert_eq!(value(&f, &PEER_STATE_CODE, &p), Some(1.0), "selected");
    assert_eq!(
        value(
            &f,
            &PEER_INFO,
            &["timesyncd", "127.0.0.1", "server", "127.127.1.1"]
        ),
        Some(1.0)
    );
    assert_eq!(value(&f, &USABLE_SOURCES, &d), Some(1.0));
    // |θ| + (root dispersion + φ·age) + (root delay + δ) / 2.
    let wce = value(&f, &WORST_CASE_ERROR, &d).expect("a bound, from timesyncd itself");
    assert!(close(wce, 14e-6 + PHI * 4.0 + 25e-6), "{wce}");
    let bound = value(&f, &PEER_ERROR_BOUND, &p).expect("bound");
    assert!(close(bound, 25e-6 + PHI * 4.0), "{bound}");
    assert_eq!(
        value(&f, &crate::model::SYNC_FREQUENCY, &d),
        Some(-10e-6),
        "-10 ppm in the kernel's units"
    );
    assert_eq!(value(&f, &reading::SYNCHRONIZED, &[]), Some(1.0));
    assert_eq!(value(&f, &reading::LAST_MESSAGE_AGE, &[]), Some(4.0));
    assert_eq!(value(&f, &reading::SPIKE, &[]), Some(0.0));
    assert_eq!(value(&f, &reading::PACKETS, &[]), Some(1.0));
    assert_eq!(value(&f, &reading::ROOT_DISTANCE_MAX, &[]), Some(5.0));
    assert_eq!(
        value(&f, &reading::SERVER_INFO, &["127.0.0.1", "127.0.0.1"]),
        Some(1.0)
    );
}

#[test]
fn a_server_ahead_gives_a_positive_offset() {
    // The lab's skewed server: 11.5 s ahead, 300 µs round trip.
    let mut m = captured();
    m.receive_us = m.origin_us + 11_500_000 + 100;
    m.transmit_us = m.receive_us + 50;
    m.destination_us = m.origin_us + 300;
    let r = read(&properties(&m), &m, 1.0);
    let f = r.families();
    let offset = value(&f, &PEER_OFFSET, &["timesyncd", "127.0.0.1"]).expect("offset");
    // ((11.5 s + 100 µs) + (11.5 s + 150 µs − 300 µs)) / 2.
    assert!(close(offset, 11.5 - 25e-6), "{offset}");
    assert!(close(r.message.delay_seconds(), 250e-6));
    assert!(close(
        value(&f, &SYNC_OFFSET, &["timesyncd"]).expect("sync offset"),
        offset
    ));
}

#[test]
fn a_stale_reply_is_unsynchronised_and_unbounded() {
    let m = captured();
    let p = properties(&m);
    let limit = 2.0 * 32.0 + FRESHNESS_GRACE_SECONDS;
    assert!(read(&p, &m, limit).synchronized(), "at the limit");
    let r = read(&p, &m, limit + 1.0);
    assert!(!r.synchronized());
    let f = r.families();
    let d = ["timesyncd"];
    assert_eq!(value(&f, &SYNC_LEAP, &d), Some(3.0));
    assert_eq!(value(&f, &SYNC_STRATUM, &d), Some(16.0));
    assert_eq!(
        value(&f, &PEER_STATE_CODE, &["timesyncd", "127.0.0.1"]),
        Some(7.0),
        "unreachable"
    );
    assert_eq!(value(&f, &USABLE_SOURCES, &d), Some(0.0));
    assert_eq!(value(&f, &WORST_CASE_ERROR, &d), None);
    assert_eq!(value(&f, &reading::SYNCHRONIZED, &[]), Some(0.0));
    assert_eq!(
        value(&f, &reading::LAST_MESSAGE_AGE, &[]),
        Some(limit + 1.0)
    );
}

#[test]
fn a_reply_timesyncd_would_refuse_is_rejected_and_a_spike_is_an_outlier() {
    let p = ["timesyncd", "127.0.0.1"];
    let mut m = captured();
    m.root_dispersion_us = 5_500_000;
    let r = read(&properties(&m), &m, 1.0);
    assert!(!r.synchronized());
    assert_eq!(value(&r.families(), &PEER_STATE_CODE, &p), Some(8.0));
    for (leap, stratum) in [(3, 8), (0, 0), (0, 16)] {
        let mut m = captured();
        (m.leap, m.stratum) = (leap, stratum);
        let r = read(&properties(&m), &m, 1.0);
        assert!(!r.synchronized(), "leap {leap} stratum {stratum}");
        assert_eq!(
            value(&r.families(), &crate::model::PEER_LEAP, &p),
            Some(f64::from(leap)),
            "the server's leap indicator, whatever it is"
        );
    }
    // A leap second announced: published as sent.
    let mut m = captured();
    m.leap = 1;
    let r = read(&properties(&m), &m, 1.0);
    assert_eq!(
        value(&r.families(), &crate::model::PEER_LEAP, &p),
        Some(1.0)
    );
    let mut m = captured();
    m.spike = true;
    let r = read(&properties(&m), &m, 1.0);
    assert!(r.synchronized(), "one sample set aside keeps the server");
    let f = r.families();
    assert_eq!(value(&f, &PEER_STATE_CODE, &p), Some(4.0), "outlier");
    assert_eq!(value(&f, &reading::SPIKE, &[]), Some(1.0));
    assert_eq!(value(&f, &USABLE_SOURCES, &["timesyncd"]), Some(1.0));
}

#[test]
fn before_the_first_reply_and_without_a_server() {
    let zero = NtpMessage::default();
    let mut p = properties(&zero);
    let r = Reading::decode(&p, 1_796_245_460.0).expect("decodes");
    assert!(!r.synchronized());
    let f = r.families();
    assert_eq!(value(&f, &SYNC_OFFSET, &["timesyncd"]), None);
    assert_eq!(value(&f, &PEER_OFFSET, &["timesyncd", "127.0.0.1"]), None);
    assert!(
        find(&f, &crate::model::PEER_LEAP).is_none(),
        "no reply: no leap"
    );
    assert_eq!(
        value(&f, &PEER_STATE_CODE, &["timesyncd", "127.0.0.1"]),
        Some(7.0)
    );
    assert!(find(&f, &reading::LAST_MESSAGE_AGE).is_none());
    // No server in use: family 0, no bytes (what timesyncd sends).
    p.insert("ServerAddress".into(), address_value(0, &[]));
    p.insert("ServerName".into(), owned(Value::from("")));
    let r = Reading::decode(&p, 1_796_245_460.0).expect("decodes");
    assert_eq!(r.server_address, None);
    let out = Timesyncd {
        address: String::new(),
        timeout: Duration::from_secs(1),
    }
    .report(r, &mut Memory::default());
    assert!(find(&out.families, &PEER_OFFSET).is_none());
    assert_eq!(
        value(&out.families, &reading::SERVER_INFO, &["", ""]),
        Some(1.0)
    );
    assert!(
        matches!(&out.errors[..], [CollectError::NoData(s)] if s.contains("no server")),
        "{:?}",
        out.errors
    );
}

#[test]
fn ipv6_servers_and_long_names() {
    let m = captured();
    let mut p = properties(&m);
    let v6: std::net::Ipv6Addr = "2001:db8::7".parse().expect("ip");
    p.insert("ServerAddress".into(), address_value(10, &v6.octets()));
    let long = "é".repeat(200);
    p.insert("ServerName".into(), owned(Value::from(long.as_str())));
    let r = read(&p, &m, 1.0);
    assert_eq!(r.server_address, Some(std::net::IpAddr::V6(v6)));
    assert!(r.server_name.len() <= reading::MAX_NAME_BYTES);
    assert!(r.server_name.chars().all(|c| c == 'é'));
    // A v4-mapped address is the v4 address.
    let mapped: std::net::Ipv6Addr = "::ffff:192.0.2.1".parse().expect("ip");
    p.insert("ServerAddress".into(), address_value(10, &mapped.octets()));
    assert_eq!(
        read(&p, &m, 1.0).server_address,
        Some("192.0.2.1".parse().expect("ip"))
    );
}

/// Properties of the wrong type, as a process that owns the name but is not
/// timesyncd could answer: each one a clear error naming the property.
#[test]
fn hostile_properties_are_refused_by_name() {
    let m = captured();
    let mut cases: Vec<(&str, OwnedValue, &str)> = vec![
        ("NTPMessage", owned(Value::from("hello")), "NTPMessage"),
        (
            "NTPMessage",
            owned(Value::from(("a", "b"))),
            "(uuuuittayttttbtt)",
        ),
        (
            "NTPMessage",
            owned(Value::from((1u32, 2u32, 3u32))),
            "NTPMessage",
        ),
        ("ServerAddress", owned(Value::from("127.0.0.1")), "(iay)"),
        (
            "ServerAddress",
            address_value(2, &[1; 16]),
            "family 2 with 16 bytes",
        ),
        ("ServerAddress", address_value(7, &[1; 4]), "family 7"),
        (
            "PollIntervalUSec",
            owned(Value::U32(32)),
            "PollIntervalUSec",
        ),
        (
            "RootDistanceMaxUSec",
            owned(Value::I64(5)),
            "RootDistanceMaxUSec",
        ),
        ("Frequency", owned(Value::U64(5)), "Frequency"),
        ("ServerName", owned(Value::U8(5)), "ServerName"),
    ];
    // A reference id of 3 bytes, and two of the 15 fields swapped.
    let three = edited(&m, |f| f[7] = Value::from(vec![1u8, 2, 3]));
    cases.push(("NTPMessage", three, "reference id of 3 bytes"));
    cases.push(("NTPMessage", edited(&m, |f| f.swap(12, 13)), "NTPMessage"));
    for (name, v, expect) in cases {
        let mut p = properties(&m);
        p.insert(name.into(), v);
        let e = Reading::decode(&p, 0.0).expect_err(name);
        assert!(e.0.contains(expect), "{name}: {e}");
    }
    for name in ["NTPMessage", "ServerAddress", "PollIntervalUSec"] {
        let mut p = properties(&m);
        p.remove(name);
        let e = Reading::decode(&p, 0.0).expect_err(name);
        assert!(e.0.contains(name) && e.0.contains("no"), "{e}");
    }
    // Optional ones may be missing.
    let mut p = properties(&m);
    for name in ["Frequency", "RootDistanceMaxUSec", "ServerName"] {
        p.remove(name);
    }
    let r = Reading::decode(&p, 0.0).expect("optional properties missing");
    assert_eq!((r.frequency, r.root_distance_max_seconds), (None, None));
}

fn any_value() -> impl proptest::strategy::Strategy<Value = OwnedValue> {
    use proptest::prelude::*;
    prop_oneof![
        any::<u64>().prop_map(|x| owned(Value::U64(x))),
        any::<i64>().prop_map(|x| owned(Value::I64(x))),
        any::<u32>().prop_map(|x| owned(Value::U32(x))),
        any::<i32>().prop_map(|x| owned(Value::I32(x))),
        any::<bool>().prop_map(|x| owned(Value::Bool(x))),
        ".{0,300}".prop_map(|s| owned(Value::from(s.as_str()))),
        (any::<i32>(), proptest::collection::vec(any::<u8>(), 0..20))
            .prop_map(|(f, b)| address_value(f, &b)),
        (
            any::<[u32; 4]>(),
            any::<i32>(),
            any::<[u64; 2]>(),
            proptest::collection::vec(any::<u8>(), 0..6),
            any::<[u64; 4]>(),
            any::<bool>(),
            any::<[u64; 2]>()
        )
            .prop_map(|(a, p, r, id, t, s, c)| owned(Value::from((
                a[0], a[1], a[2], a[3], p, r[0], r[1], id, t[0], t[1], t[2], t[3], s, c[0], c[1]
            )))),
    ]
}

proptest::proptest! {
    /// Any property values, of any type: a decode error or families,
    /// never a panic.
    #[test]
    fn any_properties_decode_or_fail_cleanly(
        values in proptest::collection::vec(any_value(), 6),
        now in proptest::num::f64::ANY,
    ) {
        let names = ["NTPMessage", "ServerAddress", "ServerName", "PollIntervalUSec", "RootDistanceMaxUSec", "Frequency"];
        let p: Properties = names.iter().map(|n| (*n).to_owned()).zip(values).collect();
        if let Ok(r) = Reading::decode(&p, now) {
            let f = r.families();
            assert_declared(&REGISTRATION, &f);
        }
    }
}
