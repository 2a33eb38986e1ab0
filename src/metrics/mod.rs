//! The exporter's metric model: static descriptors and the families a
//! scrape fills. Their encoding is in [`encode`]; everything kept between
//! scrapes to make scrapes cheaper (the incremental encoder, families made
//! once, the last `Accept` header, the last error text) is in [`memo`], and
//! nowhere else.
//!
//! Collectors gather typed readings asynchronously and turn them into
//! [`Family`] values; the scrape merges them into one list, which is then
//! encoded synchronously through `prometheus-client` (OpenMetrics 1.0 or the
//! classic text format 0.0.4, chosen by [`Format::negotiate`]). Every family
//! names a `'static` [`Desc`], declared with [`metrics!`], so the full
//! catalogue of series is known at compile time and `docs/metrics.md` can be
//! tested against it.

mod encode;
pub mod memo;

pub use encode::{Format, encode};
pub use memo::{Encoder, Kept, KeptFormat, KeptText, Memo};

use std::fmt;
use std::sync::Arc;

use smallvec::SmallVec;

/// Whether a series goes up and down or only up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A value that can go up and down.
    Gauge,
    /// A monotonic count; the name in a [`Desc`] carries no `_total`, which the
    /// encoders append to every sample as both formats require.
    Counter,
}

/// A static description of one metric family.
#[derive(Debug, PartialEq, Eq)]
pub struct Desc {
    /// Family name; for counters without the `_total` suffix.
    pub name: &'static str,
    /// One full sentence.
    pub help: &'static str,
    /// Gauge or counter.
    pub kind: Kind,
    /// Label names, in the order every sample gives their values.
    pub labels: &'static [&'static str],
}

impl Desc {
    /// The name a sample of this family carries (`_total` added for counters).
    pub fn sample_name(&self) -> String {
        match self.kind {
            Kind::Gauge => self.name.to_owned(),
            Kind::Counter => format!("{}_total", self.name),
        }
    }

    /// An empty family of this description.
    pub fn family(&'static self) -> Family {
        Family {
            desc: self,
            samples: Samples::new(),
        }
    }

    /// An empty family with room for `n` samples.
    pub fn family_of(&'static self, n: usize) -> Family {
        Family {
            desc: self,
            samples: Samples::with_capacity(n),
        }
    }

    /// A family holding one unlabelled sample.
    pub fn single(&'static self, value: f64) -> Family {
        let mut f = self.family();
        f.push(LabelValues::new(), value);
        f
    }
}

/// Declares metric families, the one way this crate does: each entry becomes
/// a `static` [`Desc`] (its help text is also its doc comment), and the list
/// names them all, in order, so a collector's catalogue can never miss one it
/// declares.
///
/// ```ignore
/// metrics! {
///     /// The families only this collector emits.
///     pub static METRICS = [
///         OFFSET: Gauge("clock_x_offset_seconds", [], "Offset of x, in seconds."),
///         REQUESTS: Counter("clock_x_requests", ["peer"], "Requests x answered."),
///     ];
/// }
/// ```
///
/// Counter names are given without `_total`, which the encoders add.
macro_rules! metrics {
    (
        $(#[$meta:meta])*
        $vis:vis static $list:ident = [
            $( $id:ident : $kind:ident ( $name:literal, [$($label:literal),* $(,)?], $help:literal $(,)? ) ),* $(,)?
        ];
    ) => {
        $(
            #[doc = $help]
            $vis static $id: $crate::metrics::Desc = $crate::metrics::Desc {
                name: $name,
                help: $help,
                kind: $crate::metrics::Kind::$kind,
                labels: &[$($label),*],
            };
        )*
        $(#[$meta])*
        $vis static $list: &[&$crate::metrics::Desc] = &[$(&$id),*];
    };
}
pub(crate) use metrics;

/// One label value. A scrape builds a few hundred of them, most of them
/// known before it starts (flag and state names, collector names, facts read
/// at start), so a value is borrowed or shared where it can be and allocated
/// only when it is new: allocations were a quarter of a scrape's CPU
/// (docs/performance.md, "Label values and samples avoid allocation").
#[derive(Debug, Clone)]
pub enum LabelValue {
    /// A value fixed at compile time.
    Static(&'static str),
    /// A value read once and shared between scrapes.
    Shared(Arc<str>),
    /// A value made in this scrape.
    Owned(String),
}

impl LabelValue {
    /// The value's text.
    pub fn as_str(&self) -> &str {
        match self {
            LabelValue::Static(s) => s,
            LabelValue::Shared(s) => s,
            LabelValue::Owned(s) => s,
        }
    }
}

impl std::ops::Deref for LabelValue {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for LabelValue {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.as_str(), other.as_str());
        // The same text at the same address (a static or a shared value
        // compared with itself from the last scrape) needs no byte compare.
        (a.as_ptr() == b.as_ptr() && a.len() == b.len()) || a == b
    }
}

impl Eq for LabelValue {}

impl PartialEq<str> for LabelValue {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for LabelValue {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for LabelValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&'static str> for LabelValue {
    fn from(s: &'static str) -> Self {
        LabelValue::Static(s)
    }
}

impl From<String> for LabelValue {
    fn from(s: String) -> Self {
        LabelValue::Owned(s)
    }
}

impl From<Arc<str>> for LabelValue {
    fn from(s: Arc<str>) -> Self {
        LabelValue::Shared(s)
    }
}

impl From<&Arc<str>> for LabelValue {
    fn from(s: &Arc<str>) -> Self {
        LabelValue::Shared(Arc::clone(s))
    }
}

/// The label values of one sample; up to two are kept inline.
pub type LabelValues = SmallVec<[LabelValue; 2]>;

/// Builds [`LabelValues`]: `labels![name, String::from(x)]`; each value goes
/// through `LabelValue::from`.
macro_rules! labels {
    ($($v:expr),* $(,)?) => {{
        // Pushed one by one: cheaper than collecting from an array.
        #[allow(unused_mut)]
        let mut values = $crate::metrics::LabelValues::new();
        $(values.push($crate::metrics::LabelValue::from($v));)*
        values
    }};
}
pub(crate) use labels;

/// One sample: label values in the order of [`Desc::labels`], and a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Label values, as many as the descriptor has label names.
    pub label_values: LabelValues,
    /// The sample's value.
    pub value: f64,
}

/// The samples of one family. Read them as a slice; add with
/// [`Family::push`]. A family kept between scrapes ([`Kept`]) shares its
/// samples, so that cloning, comparing and dropping it touches one reference
/// count; that is [`memo`]'s business, invisible here.
#[derive(Debug, Clone)]
pub struct Samples(Repr);

#[derive(Debug, Clone)]
enum Repr {
    /// Samples of this scrape (most families hold one, kept inline).
    Owned(SmallVec<[Sample; 1]>),
    /// Samples kept between scrapes.
    Shared(Arc<[Sample]>),
}

impl Samples {
    /// No samples.
    pub fn new() -> Samples {
        Samples(Repr::Owned(SmallVec::new()))
    }

    /// No samples, with room for `n`.
    pub fn with_capacity(n: usize) -> Samples {
        Samples(Repr::Owned(SmallVec::with_capacity(n)))
    }

    /// The samples, made this scrape's own first if they were shared.
    fn to_mut(&mut self) -> &mut SmallVec<[Sample; 1]> {
        if let Repr::Shared(shared) = &self.0 {
            self.0 = Repr::Owned(shared.iter().cloned().collect());
        }
        match &mut self.0 {
            Repr::Owned(owned) => owned,
            Repr::Shared(_) => unreachable!("made owned above"),
        }
    }

    /// Whether both are the same shared samples (equal without a look inside).
    pub(crate) fn is_same_shared(&self, other: &Samples) -> bool {
        matches!((&self.0, &other.0), (Repr::Shared(a), Repr::Shared(b)) if Arc::ptr_eq(a, b))
    }

    /// Whether the samples are shared with a family kept between scrapes.
    #[cfg(test)]
    pub(crate) fn is_shared(&self) -> bool {
        matches!(self.0, Repr::Shared(_))
    }
}

impl Default for Samples {
    fn default() -> Self {
        Samples::new()
    }
}

impl std::ops::Deref for Samples {
    type Target = [Sample];

    fn deref(&self) -> &[Sample] {
        match &self.0 {
            Repr::Owned(owned) => owned,
            Repr::Shared(shared) => shared,
        }
    }
}

impl PartialEq for Samples {
    fn eq(&self, other: &Samples) -> bool {
        self.is_same_shared(other) || **self == **other
    }
}

impl<'a> IntoIterator for &'a Samples {
    type Item = &'a Sample;
    type IntoIter = std::slice::Iter<'a, Sample>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// A metric family filled by one scrape.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// What the family is.
    pub desc: &'static Desc,
    /// Its samples.
    pub samples: Samples,
}

impl Family {
    /// Adds one sample. The number of label values must match the descriptor.
    pub fn push(&mut self, label_values: LabelValues, value: f64) {
        debug_assert_eq!(
            label_values.len(),
            self.desc.labels.len(),
            "label values for {}",
            self.desc.name
        );
        self.samples.to_mut().push(Sample {
            label_values,
            value,
        });
    }

    /// The same family with its samples shared, for a family kept between
    /// scrapes ([`Kept`]): cloning it then copies nothing, and the encoder
    /// knows it unchanged without comparing its samples.
    #[must_use]
    fn into_shared(mut self) -> Self {
        let Repr::Owned(owned) = &mut self.samples.0 else {
            return self;
        };
        for v in owned.iter_mut().flat_map(|s| s.label_values.iter_mut()) {
            if let LabelValue::Owned(o) = v {
                *v = LabelValue::Shared(Arc::from(std::mem::take(o)));
            }
        }
        let samples: Arc<[Sample]> = std::mem::take(owned).into_iter().collect();
        self.samples = Samples(Repr::Shared(samples));
        self
    }

    /// Whether two samples carry the same label values: the same series
    /// twice, which Prometheus would silently take only once of.
    pub fn has_duplicates(&self) -> bool {
        let samples: &[Sample] = &self.samples;
        if samples.len() < 2 {
            return false;
        }
        if samples.len() <= 32 {
            return samples.iter().enumerate().any(|(i, a)| {
                samples[i + 1..]
                    .iter()
                    .any(|b| a.label_values == b.label_values)
            });
        }
        let mut keys: Vec<&[LabelValue]> = samples.iter().map(|s| &s.label_values[..]).collect();
        keys.sort_unstable_by(|a, b| {
            a.iter()
                .map(LabelValue::as_str)
                .cmp(b.iter().map(LabelValue::as_str))
        });
        keys.windows(2).any(|w| w[0] == w[1])
    }

    /// Drops every sample whose label values repeat an earlier one's, and
    /// says how many went: no input may make the exposition invalid.
    pub fn drop_duplicates(&mut self) -> usize {
        if !self.has_duplicates() {
            return 0;
        }
        let samples = self.samples.to_mut();
        let before = samples.len();
        let mut kept: Vec<Sample> = Vec::with_capacity(before);
        for s in samples.drain(..) {
            if !kept.iter().any(|k| k.label_values == s.label_values) {
                kept.push(s);
            }
        }
        samples.extend(kept);
        before - samples.len()
    }

    /// Whether the samples are shared with a family kept between scrapes
    /// (checked when they were kept).
    pub(crate) fn is_kept(&self) -> bool {
        matches!(self.samples.0, Repr::Shared(_))
    }

    /// Adds one sample with a builder-style call.
    #[must_use]
    pub fn with(mut self, label_values: LabelValues, value: f64) -> Self {
        self.push(label_values, value);
        self
    }
}

/// The family of a descriptor in a list, if present.
pub fn find<'a>(families: &'a [Family], desc: &Desc) -> Option<&'a Family> {
    families.iter().find(|f| std::ptr::eq(f.desc, desc))
}

impl Family {
    /// The value of the sample whose label values start with `prefix`.
    pub fn value(&self, prefix: &[&str]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| s.label_values.iter().zip(prefix).all(|(a, b)| a == b))
            .map(|s| s.value)
    }
}

/// Merges families of the same descriptor (for example `clock_peer_offset_seconds`
/// filled by both the ntpd and chrony collectors) so each is encoded once, keeping
/// first-seen order. Families without samples are kept: an empty family is
/// encoded as its HELP and TYPE lines only.
pub fn merge(families: Vec<Family>) -> Vec<Family> {
    // Most scrapes have nothing to merge (only the daemon collectors share
    // descriptors): find out from the sorted descriptor addresses, without
    // moving a family.
    let mut descs: SmallVec<[*const Desc; 64]> = families
        .iter()
        .map(|f| std::ptr::from_ref(f.desc))
        .collect();
    descs.sort_unstable();
    if descs.windows(2).all(|w| w[0] != w[1]) {
        return families;
    }
    let mut out: Vec<Family> = Vec::with_capacity(families.len());
    for f in families {
        if let Some(existing) = out.iter_mut().find(|e| std::ptr::eq(e.desc, f.desc)) {
            existing.samples.to_mut().extend(f.samples.iter().cloned());
        } else {
            out.push(f);
        }
    }
    out
}

/// Asserts that no family repeats a series: the property every collector's
/// tests (and fuzz targets) check of what it emits.
#[cfg(test)]
pub fn assert_no_duplicate_series(families: &[Family]) {
    for f in families {
        assert!(
            !f.has_duplicates(),
            "{} repeats a series: {:?}",
            f.desc.name,
            f.samples
                .iter()
                .map(|s| s
                    .label_values
                    .iter()
                    .map(LabelValue::as_str)
                    .collect::<Vec<_>>())
                .collect::<Vec<_>>()
        );
    }
}

/// Test descriptors and families shared by this module's tests.
#[cfg(test)]
pub(crate) mod test_families {
    use super::*;

    metrics! {
        #[allow(dead_code)] // the descriptors are what the tests use
        pub static TEST = [
            G: Gauge("clock_test_gauge_seconds", ["peer"], "A test gauge."),
            C: Counter("clock_test_requests", [], "A test counter."),
            E: Gauge("clock_test_empty", ["x"], "Never filled."),
        ];
    }

    pub fn sample() -> Vec<Family> {
        vec![
            G.family().with(labels!["192.0.2.1"], -0.087),
            C.single(42.0),
            G.family().with(labels!["a\"b\\c\nd"], 1.5),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::test_families::G;
    use super::*;

    #[test]
    fn duplicate_series_are_found_and_dropped_keeping_the_first() {
        let mut small = G
            .family()
            .with(labels!["a"], 1.0)
            .with(labels!["b"], 2.0)
            .with(labels![String::from("a")], 3.0);
        assert!(small.has_duplicates());
        assert_eq!(small.drop_duplicates(), 1);
        assert_eq!(small.samples.len(), 2);
        assert_eq!(small.value(&["a"]), Some(1.0));
        assert!(!small.has_duplicates());
        assert_eq!(small.drop_duplicates(), 0);
        // Many samples take the sorting path.
        let mut big = G.family();
        for i in 0..100 {
            big.push(labels![format!("p{}", i % 60)], f64::from(i));
        }
        assert!(big.has_duplicates());
        assert_eq!(big.drop_duplicates(), 40);
        assert!(!big.has_duplicates());
        let unique = (0..100).fold(G.family(), |f, i| f.with(labels![format!("p{i}")], 1.0));
        assert!(!unique.has_duplicates());
    }

    #[test]
    fn label_values_compare_by_text_whatever_they_hold() {
        let shared: Arc<str> = Arc::from("tsc");
        let values = [
            LabelValue::from("tsc"),
            LabelValue::from(String::from("tsc")),
            LabelValue::from(&shared),
        ];
        for a in &values {
            for b in &values {
                assert_eq!(a, b);
            }
            assert_ne!(*a, LabelValue::from("ts"));
            assert_ne!(*a, LabelValue::from(String::from("tsd")));
        }
        // A prefix at the same address is not the same text.
        let long: &'static str = "kvm-clock";
        assert_ne!(LabelValue::from(long), LabelValue::from(&long[..3]));
        let three = labels!["a", String::from("b"), &shared];
        assert_eq!(three.len(), 3);
        assert_eq!(three[2], "tsc");
    }
}
