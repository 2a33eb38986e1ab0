//! Everything kept between scrapes to make a scrape cheaper, in one room.
//! Collectors write plain families; what is kept, and how sharing and
//! pointer identity make reuse cheap, is decided here:
//!
//! - [`Encoder`]: the last body of each format, reused for every family that
//!   is the same as last time;
//! - [`Kept`]: families made once (facts read at start, a listing kept until
//!   the kernel announces a change), handed out again without copying;
//! - [`Memo`]: a value made for the last key and handed out while the key is
//!   the same (families of unchanged attribute texts, the format of the last
//!   `Accept` header);
//! - [`KeptText`]: a message kept and compared with its next version as that
//!   is written, without making it.
//!
//! Each was measured before it was kept: docs/performance.md, "Design
//! decisions".

use std::borrow::Borrow;
use std::fmt;
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector as PcCollector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;

use super::encode::{encode_each, encode_into, write_eof};
use super::{Family, Format, Sample, encode};

/// Families kept between scrapes. Their samples are shared: handing them out
/// again copies no text, and the [`Encoder`] knows them unchanged without
/// comparing them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Kept(Vec<Family>);

impl Kept {
    /// Keeps `families`, without a series twice (checked here, once, so
    /// that scrapes need not check them again).
    pub fn new(families: impl IntoIterator<Item = Family>) -> Kept {
        Kept(
            families
                .into_iter()
                .map(|mut f| {
                    let dropped = f.drop_duplicates();
                    if dropped > 0 {
                        tracing::error!(
                            family = f.desc.name,
                            dropped,
                            "dropped duplicate series of a kept family (a bug)"
                        );
                    }
                    f.into_shared()
                })
                .collect(),
        )
    }

    /// A copy of the kept families, to hand out in a scrape.
    pub fn families(&self) -> impl Iterator<Item = Family> + '_ {
        self.0.iter().cloned()
    }
}

/// A value made for the last key, handed out again while the key stays the
/// same.
#[derive(Debug, Clone)]
pub struct Memo<K, V> {
    last: Option<(K, V)>,
}

impl<K, V> Default for Memo<K, V> {
    fn default() -> Self {
        Memo { last: None }
    }
}

impl<K, V: Clone> Memo<K, V> {
    /// The value kept for `key`, if the last key was equal to it.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: PartialEq + ?Sized,
    {
        self.last
            .as_ref()
            .filter(|(k, _)| k.borrow() == key)
            .map(|(_, v)| v.clone())
    }

    /// Keeps `value` for `key`, in place of the last one.
    pub fn put(&mut self, key: K, value: V) {
        self.last = Some((key, value));
    }

    /// The value for `key`: the kept one if the key is the same as last
    /// time, else `make`'s, which is kept.
    pub fn get_or_make(&mut self, key: K, make: impl FnOnce(&K) -> V) -> V
    where
        K: PartialEq,
    {
        if let Some(v) = self.get(&key) {
            return v;
        }
        let value = make(&key);
        self.put(key, value.clone());
        value
    }

    /// As [`Memo::get_or_make`], for a `make` that can fail; a failure keeps
    /// nothing.
    pub fn get_or_try<E>(&mut self, key: K, make: impl FnOnce(&K) -> Result<V, E>) -> Result<V, E>
    where
        K: PartialEq,
    {
        if let Some(v) = self.get(&key) {
            return Ok(v);
        }
        let value = make(&key)?;
        self.put(key, value.clone());
        Ok(value)
    }
}

/// The format negotiated for the last `Accept` header: a scraper sends the
/// same header every time, and comparing it costs less than parsing it
/// (docs/performance.md, "The last Accept header is kept").
#[derive(Debug, Default)]
pub struct KeptFormat(Mutex<Memo<Vec<u8>, Format>>);

/// `Accept` headers longer than this are negotiated every time, not kept.
const MAX_KEPT_ACCEPT: usize = 1024;

impl KeptFormat {
    /// The format for a request's `Accept` header (see [`Format::negotiate`]).
    pub fn negotiate(&self, accept: Option<&[u8]>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };
        // A busy memo (another scrape at the same moment) is a miss, never a wait.
        let mut last = self.0.try_lock().ok();
        if let Some(format) = last.as_ref().and_then(|m| m.get(accept)) {
            return format;
        }
        // A header value is text only if it is visible ASCII (RFC 9110
        // field-vchar, with the tab hyper allows); anything else names no
        // media type, and gets the text format.
        let text = accept
            .iter()
            .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
            .then(|| std::str::from_utf8(accept).ok())
            .flatten();
        let format = Format::negotiate(text);
        if let Some(last) = last.as_mut()
            && accept.len() <= MAX_KEPT_ACCEPT
        {
            // A copy, so as not to hold on to the connection's read buffer.
            last.put(accept.to_vec(), format);
        }
        format
    }
}

/// A message kept between scrapes (a collector's last errors, joined), and
/// compared with the next one as that is written: most scrapes repeat the
/// last outcome, and then nothing is allocated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeptText(String);

impl KeptText {
    /// The kept text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `write` writes exactly the kept text, found without making it.
    pub fn is(&self, write: impl FnOnce(&mut dyn fmt::Write) -> fmt::Result) -> bool {
        /// Eats the kept text as it is written; stops at the first difference.
        struct Compare<'a>(&'a str);
        impl fmt::Write for Compare<'_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                self.0 = self.0.strip_prefix(s).ok_or(fmt::Error)?;
                Ok(())
            }
        }
        let mut rest = Compare(&self.0);
        write(&mut rest).is_ok() && rest.0.is_empty()
    }

    /// The text `write` writes.
    pub fn make(write: impl FnOnce(&mut dyn fmt::Write) -> fmt::Result) -> KeptText {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = write(&mut out);
        KeptText(out)
    }
}

/// Whether two families would encode to the same text: the same descriptor,
/// the same label values and bit-identical values (`0.0` and `-0.0` are
/// spelled differently; a NaN is the same NaN).
fn same_text(a: &Family, b: &Family) -> bool {
    std::ptr::eq(a.desc, b.desc)
        && (a.samples.is_same_shared(&b.samples) || same_samples_text(&a.samples, &b.samples))
}

fn same_samples_text(a: &[Sample], b: &[Sample]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.value.to_bits() == y.value.to_bits() && x.label_values == y.label_values
        })
}

/// Encodes scrapes, reusing the text of every family that is the same as in
/// the previous scrape of the same format: between two scrapes most families
/// (flags, states, facts, info series, counters at rest) do not change, and
/// comparing a family costs a fraction of encoding it (docs/performance.md,
/// "Only changed families are encoded"). The text of a changed family is made by
/// `prometheus-client` as before, family by family, so the output is byte for
/// byte what [`encode`] gives.
///
/// The last body is kept whole (the response shares it, it is not copied),
/// with each family's place in it: families that are unchanged and were
/// neighbours last time are copied in one run, and a changed family is
/// encoded straight into the new body (docs/performance.md, "The last body is
/// kept whole").
#[derive(Debug, Default)]
pub struct Encoder {
    /// Per format: the last scrape's body and families.
    memo: [std::sync::Mutex<LastBody>; 2],
}

/// The last body of one format, each family of it with its place in the body
/// (taken out as they are reused), and a registry that encodes one family at
/// a time without copying it.
#[derive(Debug, Default)]
struct LastBody {
    body: Arc<String>,
    families: Vec<Option<(Family, std::ops::Range<usize>)>>,
    one: OneFamily,
}

/// A `prometheus-client` registry whose only collector encodes whatever
/// family is put in its slot.
#[derive(Debug)]
struct OneFamily {
    registry: Registry,
    slot: Arc<std::sync::Mutex<Vec<Family>>>,
}

impl Default for OneFamily {
    fn default() -> Self {
        let slot = Arc::new(std::sync::Mutex::new(Vec::with_capacity(1)));
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Slot(Arc::clone(&slot))));
        OneFamily { registry, slot }
    }
}

impl OneFamily {
    /// Appends the text of `family` to `out` and gives the family back.
    fn encode(&self, family: Family, format: Format, out: &mut String) -> Option<Family> {
        let lock = || {
            self.slot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        lock().push(family);
        encode_into(out, &self.registry, format);
        lock().pop()
    }
}

/// The collector of [`OneFamily`].
#[derive(Debug)]
struct Slot(Arc<std::sync::Mutex<Vec<Family>>>);

impl PcCollector for Slot {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let families = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        encode_each(&families, encoder)
    }
}

impl Encoder {
    /// Encodes families in the given format.
    pub fn encode(&self, families: Vec<Family>, format: Format) -> bytes::Bytes {
        let slot = match format {
            Format::OpenMetrics => 0,
            Format::Text => 1,
        };
        // Scrapes at the same moment do not wait for each other: the one that
        // finds the memo busy encodes everything itself.
        let Ok(mut memo) = self.memo[slot].try_lock() else {
            return encode(families, format).into();
        };
        let memo = &mut *memo;
        let mut out = String::with_capacity(memo.body.len() + 256);
        let mut next = Vec::with_capacity(families.len());
        // The run of the last body still to be copied, extended while reused
        // families follow each other there.
        let mut run = 0..0;
        for (i, f) in families.into_iter().enumerate() {
            // Families come in the same order every scrape: look at the same
            // place first, then anywhere.
            let kept = match memo.families.get_mut(i) {
                Some(Some((k, _))) if std::ptr::eq(k.desc, f.desc) => memo.families[i].take(),
                _ => memo
                    .families
                    .iter_mut()
                    .find(|e| {
                        e.as_ref()
                            .is_some_and(|(k, _)| std::ptr::eq(k.desc, f.desc))
                    })
                    .and_then(Option::take),
            };
            let start = out.len() + run.len();
            if let Some((_, place)) = kept.filter(|(k, _)| same_text(k, &f)) {
                if run.end != place.start {
                    copy_run(&memo.body, &mut run, &mut out);
                    run.start = place.start;
                }
                run.end = place.end;
                next.push(Some((f, start..start + place.len())));
            } else {
                copy_run(&memo.body, &mut run, &mut out);
                let f = memo.one.encode(f, format, &mut out);
                next.push(f.map(|f| (f, start..out.len())));
            }
        }
        copy_run(&memo.body, &mut run, &mut out);
        if format == Format::OpenMetrics {
            write_eof(&mut out);
        }
        let body = Arc::new(out);
        memo.body = Arc::clone(&body);
        memo.families = next;
        bytes::Bytes::from_owner(SharedText(body))
    }
}

/// A body shared by the response and the memo.
struct SharedText(Arc<String>);

impl AsRef<[u8]> for SharedText {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// Appends the run of `body` to `out` and empties it.
fn copy_run(body: &str, run: &mut std::ops::Range<usize>, out: &mut String) {
    if run.start < run.end {
        // Runs start and end at family boundaries, so slicing cannot fail.
        out.push_str(body.get(run.clone()).unwrap_or_default());
        *run = run.end..run.end;
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_families::*;
    use super::super::{LabelValue, labels, merge};
    use super::*;

    /// What an [`Encoder`] gives, as text.
    fn encoded(enc: &Encoder, families: Vec<Family>, format: Format) -> String {
        String::from_utf8(enc.encode(families, format).to_vec()).expect("the body is UTF-8")
    }

    #[test]
    fn encoder_reuses_text_only_of_unchanged_families() {
        let enc = Encoder::default();
        let first = vec![C.single(1.0), G.family().with(labels!["a"], 0.0)];
        assert_eq!(
            encoded(&enc, first.clone(), Format::Text),
            encode(first, Format::Text)
        );
        // -0.0 equals 0.0 but is spelled otherwise; a changed counter, a new
        // label value and a family that was not there before all show.
        let second = vec![
            E.family(),
            C.single(2.0),
            G.family().with(labels!["a"], -0.0),
        ];
        let got = encoded(&enc, second.clone(), Format::Text);
        assert_eq!(got, encode(second, Format::Text));
        assert!(got.contains("clock_test_requests_total 2\n"), "{got}");
        assert!(got.contains("{peer=\"a\"} -0.0\n"), "{got}");
        let third = vec![G.family().with(labels!["a"], -0.0).with(labels!["b"], 1.0)];
        let got = encoded(&enc, third, Format::Text);
        assert!(got.contains("{peer=\"b\"} 1.0\n"), "{got}");
        assert!(!got.contains("clock_test_requests"), "{got}");
        let om = encoded(&enc, vec![C.single(2.0)], Format::OpenMetrics);
        assert_eq!(om, encode(vec![C.single(2.0)], Format::OpenMetrics));
        assert_eq!(om.matches("# EOF").count(), 1, "{om}");
    }

    #[test]
    fn encoder_copies_unchanged_families_from_anywhere_in_the_last_body() {
        let enc = Encoder::default();
        let g = G.family().with(labels!["a"], 1.0).with(labels!["b"], 2.0);
        let all = vec![C.single(1.0), E.family(), g.clone()];
        assert_eq!(
            encoded(&enc, all.clone(), Format::OpenMetrics),
            encode(all, Format::OpenMetrics)
        );
        // Reordered: every family is reused, from non-neighbouring places.
        let reordered = vec![g.clone(), C.single(1.0), E.family()];
        let want = encode(reordered.clone(), Format::OpenMetrics);
        assert!(
            want.starts_with("# HELP clock_test_gauge_seconds"),
            "{want}"
        );
        assert_eq!(encoded(&enc, reordered, Format::OpenMetrics), want);
        // The middle one changed, its neighbours are copied around it.
        let changed = vec![g.clone(), C.single(3.0), E.family()];
        let want = encode(changed.clone(), Format::OpenMetrics);
        assert!(want.contains("clock_test_requests_total 3\n"), "{want}");
        assert_eq!(encoded(&enc, changed.clone(), Format::OpenMetrics), want);
        assert_eq!(encoded(&enc, changed, Format::OpenMetrics), want);
        // A response keeps its body while later scrapes replace the memo.
        let held = enc.encode(vec![g.clone()], Format::Text);
        let _later = enc.encode(vec![C.single(9.0)], Format::Text);
        assert_eq!(held, encode(vec![g], Format::Text));
    }

    #[test]
    fn shared_samples_equal_their_owned_form_and_copy_on_write() {
        let owned = G
            .family()
            .with(labels![String::from("a")], 1.0)
            .with(labels!["b"], 2.0);
        let shared = owned.clone().kept();
        assert!(shared.samples.is_shared());
        assert!(matches!(
            shared.samples[0].label_values[0],
            LabelValue::Shared(_)
        ));
        assert_eq!(shared, owned);
        assert!(same_text(&shared, &owned) && same_text(&shared, &shared.clone()));
        assert!(shared.samples.is_same_shared(&shared.clone().samples));
        assert!(!shared.samples.is_same_shared(&owned.clone().kept().samples));
        // Adding to a clone leaves the kept family as it was.
        let mut more = shared.clone();
        more.push(labels!["c"], 3.0);
        assert_eq!(more.samples.len(), 3);
        assert_eq!(shared.samples.len(), 2);
        assert!(!same_text(&more, &shared));
        // Merging into a shared family copies it first.
        let merged = merge(vec![shared.clone(), G.family().with(labels!["d"], 4.0)]);
        assert_eq!(merged[0].value(&["d"]), Some(4.0));
        assert_eq!(shared.value(&["d"]), None);
        assert_eq!(
            encode(vec![shared], Format::Text),
            encode(vec![owned], Format::Text)
        );
    }

    fn arb_families() -> impl proptest::strategy::Strategy<Value = Vec<Family>> {
        use proptest::prelude::*;
        let value = prop_oneof![
            Just(0.0),
            Just(-0.0),
            Just(f64::NAN),
            Just(1.5),
            Just(f64::INFINITY),
            any::<f64>()
        ];
        let label = prop_oneof![Just("a"), Just("b"), Just("x\"y")];
        let gauge = proptest::collection::vec((label, value.clone()), 0..4).prop_map(|s| {
            let mut f = G.family();
            for (l, v) in s {
                f.push(labels![l], v);
            }
            f
        });
        let counter = value.prop_map(|v| C.single(v));
        // Families kept between scrapes are shared; some are here too.
        let family = (prop_oneof![gauge, counter, Just(E.family())], any::<bool>())
            .prop_map(|(f, shared)| if shared { f.kept() } else { f });
        proptest::collection::vec(family, 0..5).prop_map(merge)
    }

    impl Family {
        /// The family as a [`Kept`] one hands it out.
        fn kept(self) -> Family {
            Kept::new([self]).families().next().expect("one family")
        }
    }

    #[test]
    fn memo_hands_out_the_value_while_the_key_stays() {
        let mut m: Memo<Vec<u8>, u32> = Memo::default();
        let mut made = 0;
        let mut get = |m: &mut Memo<Vec<u8>, u32>, k: &[u8]| {
            m.get_or_try(k.to_vec(), |k| {
                made += 1;
                Ok::<_, ()>(k.len() as u32)
            })
        };
        assert_eq!(get(&mut m, b"ab"), Ok(2));
        assert_eq!(get(&mut m, b"ab"), Ok(2));
        assert_eq!(m.get(&b"ab"[..]), Some(2));
        assert_eq!(get(&mut m, b"abc"), Ok(3));
        assert_eq!(m.get(&b"ab"[..]), None, "only the last key is kept");
        assert_eq!(made, 2);
        assert_eq!(m.get_or_try(b"x".to_vec(), |_| Err("no")), Err("no"));
        assert_eq!(m.get(&b"abc"[..]), Some(3), "a failure keeps nothing new");
    }

    #[test]
    fn kept_accept_header_answers_only_for_the_same_bytes() {
        let formats = KeptFormat::default();
        let prometheus: &[u8] = b"application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        let om_last: &[u8] = b"text/plain;q=0.5,application/openmetrics-text";
        let om_never: &[u8] = b"text/plain;q=0.5,application/openmetrics-text;q=0";
        let not_ascii: &[u8] = b"application/openmetrics-text\xff";
        let not_visible: &[u8] = "application/openmetrics-text\u{e9}".as_bytes();
        let long = format!("application/openmetrics-text,{}", "x/y;q=0.1,".repeat(200));
        for _ in 0..2 {
            assert_eq!(formats.negotiate(Some(prometheus)), Format::OpenMetrics);
            assert_eq!(formats.negotiate(Some(prometheus)), Format::OpenMetrics);
            assert_eq!(formats.negotiate(None), Format::Text);
            assert_eq!(formats.negotiate(Some(om_last)), Format::OpenMetrics);
            assert_eq!(formats.negotiate(Some(om_never)), Format::Text);
            assert_eq!(formats.negotiate(Some(om_never)), Format::Text);
            // Bytes outside visible ASCII are not a media type: text.
            assert_eq!(formats.negotiate(Some(not_ascii)), Format::Text);
            assert_eq!(formats.negotiate(Some(not_visible)), Format::Text);
            assert_eq!(
                formats.negotiate(Some(long.as_bytes())),
                Format::OpenMetrics
            );
            assert_eq!(formats.negotiate(Some(om_never)), Format::Text);
        }
        let kept = |f: &KeptFormat, k: &[u8]| f.0.lock().expect("lock").get(k);
        assert_eq!(kept(&formats, om_never), Some(Format::Text));
        assert_eq!(
            formats.negotiate(Some(long.as_bytes())),
            Format::OpenMetrics
        );
        assert_eq!(
            kept(&formats, long.as_bytes()),
            None,
            "a long header is not kept"
        );
        assert_eq!(kept(&formats, om_never), Some(Format::Text));
    }

    #[test]
    fn kept_text_is_compared_without_being_made_again() {
        let two = |w: &mut dyn fmt::Write| write!(w, "io: a; no data: b; c");
        let kept = KeptText::make(two);
        assert_eq!(kept.as_str(), "io: a; no data: b; c");
        assert!(kept.is(two));
        assert!(KeptText::default().is(|_| Ok(())));
        assert!(!KeptText::default().is(two));
        assert!(
            !kept.is(|w| w.write_str("io: a")),
            "a prefix is not the same"
        );
        assert!(
            !kept.is(|w| write!(w, "io: a; no data: b; cd")),
            "nor a longer text"
        );
        assert!(!kept.is(|w| write!(w, "io: a; no data: b; d")));
    }

    proptest::proptest! {
        #[test]
        fn encoder_output_is_always_what_encode_gives(
            scrapes in proptest::collection::vec(arb_families(), 1..6),
        ) {
            let enc = Encoder::default();
            for families in scrapes {
                for format in [Format::Text, Format::OpenMetrics] {
                    proptest::prop_assert_eq!(
                        encoded(&enc, families.clone(), format),
                        encode(families.clone(), format)
                    );
                }
            }
        }

    }
}
