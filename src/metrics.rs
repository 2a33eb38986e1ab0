//! The exporter's metric model: static descriptors, the families a scrape
//! fills, and their encoding in both exposition formats.
//!
//! Collectors gather typed readings asynchronously and turn them into
//! [`Family`] values; the scrape merges them into one list, which is then
//! encoded synchronously through `prometheus-client` (OpenMetrics 1.0 or the
//! classic text format 0.0.4, chosen by [`Format::negotiate`]). Every family
//! names a `'static` [`Desc`], so the full catalogue of series is known at
//! compile time and `docs/metrics.md` can be tested against it.

use std::fmt;
use std::sync::Arc;

use smallvec::SmallVec;

use prometheus_client::collector::Collector as PcCollector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabel, EncodeLabelSet, EncodeMetric, LabelSetEncoder, MetricEncoder,
    NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

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
/// only when it is new (docs/performance.md: allocations were a quarter of a
/// scrape's CPU).
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

/// The samples of one family: filled by this scrape (most families hold one,
/// kept inline), or shared with a family kept between scrapes, so that
/// cloning, comparing and dropping it touches one reference count.
#[derive(Debug, Clone)]
pub enum Samples {
    /// Samples of this scrape.
    Owned(SmallVec<[Sample; 1]>),
    /// Samples kept between scrapes.
    Shared(Arc<[Sample]>),
}

impl Samples {
    /// No samples.
    pub fn new() -> Samples {
        Samples::Owned(SmallVec::new())
    }

    /// No samples, with room for `n`.
    pub fn with_capacity(n: usize) -> Samples {
        Samples::Owned(SmallVec::with_capacity(n))
    }

    /// The samples, made this scrape's own first if they were shared.
    pub fn to_mut(&mut self) -> &mut SmallVec<[Sample; 1]> {
        if let Samples::Shared(shared) = self {
            *self = Samples::Owned(shared.iter().cloned().collect());
        }
        match self {
            Samples::Owned(owned) => owned,
            Samples::Shared(_) => unreachable!("made owned above"),
        }
    }

    /// Whether both are the same shared samples (equal without a look inside).
    pub fn is_same_shared(&self, other: &Samples) -> bool {
        matches!((self, other), (Samples::Shared(a), Samples::Shared(b)) if Arc::ptr_eq(a, b))
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
        match self {
            Samples::Owned(owned) => owned,
            Samples::Shared(shared) => shared,
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
    /// scrapes: cloning it then copies nothing, and the encoder knows it
    /// unchanged without comparing its samples.
    #[must_use]
    pub fn into_shared(mut self) -> Self {
        let samples: Arc<[Sample]> = match &mut self.samples {
            Samples::Shared(_) => return self,
            Samples::Owned(owned) => {
                for v in owned.iter_mut().flat_map(|s| s.label_values.iter_mut()) {
                    if let LabelValue::Owned(o) = v {
                        *v = LabelValue::Shared(Arc::from(std::mem::take(o)));
                    }
                }
                std::mem::take(owned).into_iter().collect()
            }
        };
        self.samples = Samples::Shared(samples);
        self
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

/// The exposition format of one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0.0 text.
    OpenMetrics,
    /// The classic Prometheus text format 0.0.4.
    Text,
}

impl Format {
    /// The `Content-Type` header value of the format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }

    /// Picks the format for an `Accept` header as client_golang's `expfmt.Negotiate`
    /// does: OpenMetrics only to a client that asks for it by name with a quality
    /// at least as high as it gives the plain-text format; the classic text
    /// format to everyone else (curl, promtool, older agents, no header).
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let mut best_om: Option<f32> = None;
        let mut best_text: Option<f32> = None;
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim();
            let mut q = 1.0f32;
            for p in parts {
                if let Some((k, v)) = p.split_once('=')
                    && k.trim().eq_ignore_ascii_case("q")
                {
                    q = v
                        .trim()
                        .parse::<f32>()
                        .ok()
                        .filter(|q| q.is_finite())
                        .unwrap_or(0.0);
                }
            }
            if q <= 0.0 {
                continue;
            }
            let is = |m: &str| media.eq_ignore_ascii_case(m);
            let slot = if is("application/openmetrics-text") {
                &mut best_om
            } else if is("text/plain") || is("text/*") || media == "*/*" {
                &mut best_text
            } else {
                continue;
            };
            *slot = Some(slot.map_or(q, |b: f32| b.max(q)));
        }
        match (best_om, best_text) {
            (Some(om), Some(t)) if om >= t => Format::OpenMetrics,
            (Some(_), None) => Format::OpenMetrics,
            _ => Format::Text,
        }
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
/// comparing a family costs a fraction of encoding it
/// (docs/performance.md). The text of a changed family is made by
/// `prometheus-client` as before, family by family, so the output is byte for
/// byte what [`encode`] gives.
///
/// The last body is kept whole (the response shares it, it is not copied),
/// with each family's place in it: families that are unchanged and were
/// neighbours last time are copied in one run, and a changed family is
/// encoded straight into the new body.
#[derive(Debug, Default)]
pub struct Encoder {
    /// Per format: the last scrape's body and families.
    memo: [std::sync::Mutex<Memo>; 2],
}

/// The last body of one format, each family of it with its place in the body
/// (taken out as they are reused), and a registry that encodes one family at
/// a time without copying it.
#[derive(Debug, Default)]
struct Memo {
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

/// Encodes families in the given format, all at once: the reference the
/// [`Encoder`] is tested against, and what it falls back to.
pub fn encode(families: Vec<Family>, format: Format) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Families(families)));
    let mut out = String::with_capacity(16 * 1024);
    encode_into(&mut out, &registry, format);
    if format == Format::OpenMetrics {
        write_eof(&mut out);
    }
    out
}

/// Appends the text of a registry's families, without OpenMetrics' `# EOF`.
fn encode_into(out: &mut String, registry: &Registry, format: Format) {
    // Writing into a String cannot fail; an Err here would be a bug in the
    // label or name handling, which the tests cover.
    let result = match format {
        Format::OpenMetrics => prometheus_client::encoding::text::encode_registry(out, registry),
        Format::Text => prometheus_client::encoding::prometheus_text::encode(out, registry),
    };
    if let Err(e) = result {
        tracing::error!(error = %e, "encoding metrics failed");
    }
}

fn write_eof(out: &mut String) {
    if let Err(e) = prometheus_client::encoding::text::encode_eof(out) {
        tracing::error!(error = %e, "encoding metrics failed");
    }
}

/// The snapshot as a `prometheus-client` collector, encoded on demand.
#[derive(Debug)]
struct Families(Vec<Family>);

impl PcCollector for Families {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        encode_each(&self.0, encoder)
    }
}

fn encode_each(families: &[Family], mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
    for f in families {
        let metric_type = match f.desc.kind {
            Kind::Gauge => MetricType::Gauge,
            Kind::Counter => MetricType::Counter,
        };
        let mut me = encoder.encode_descriptor(f.desc.name, f.desc.help, None, metric_type)?;
        for s in &f.samples {
            let labels = Labels {
                names: f.desc.labels,
                values: &s.label_values,
            };
            let sample_encoder = me.encode_family(&labels)?;
            Value {
                kind: f.desc.kind,
                value: s.value,
            }
            .encode(sample_encoder)?;
        }
    }
    Ok(())
}

struct Labels<'a> {
    names: &'static [&'static str],
    values: &'a [LabelValue],
}

impl EncodeLabelSet for Labels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), fmt::Error> {
        for (name, value) in self.names.iter().zip(self.values) {
            (*name, value.as_str()).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Value {
    kind: Kind,
    value: f64,
}

impl EncodeMetric for Value {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), fmt::Error> {
        match self.kind {
            Kind::Gauge => encoder.encode_gauge(&self.value),
            // Counters are whole numbers; encoding them as integers keeps `42`
            // rather than `42.0` in both formats.
            Kind::Counter => {
                encoder.encode_counter::<NoLabelSet, _, u64>(&(self.value.max(0.0) as u64), None)
            }
        }
    }

    fn metric_type(&self) -> MetricType {
        match self.kind {
            Kind::Gauge => MetricType::Gauge,
            Kind::Counter => MetricType::Counter,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    metrics! {
        #[allow(dead_code)] // the descriptors are what the tests use
        static TEST = [
            G: Gauge("clock_test_gauge_seconds", ["peer"], "A test gauge."),
            C: Counter("clock_test_requests", [], "A test counter."),
            E: Gauge("clock_test_empty", ["x"], "Never filled."),
        ];
    }

    fn sample() -> Vec<Family> {
        vec![
            G.family().with(labels!["192.0.2.1"], -0.087),
            C.single(42.0),
            G.family().with(labels!["a\"b\\c\nd"], 1.5),
        ]
    }

    #[test]
    fn text_format_is_classic_0_0_4() {
        let out = encode(merge(sample()), Format::Text);
        assert_eq!(
            out,
            "# HELP clock_test_gauge_seconds A test gauge.\n\
             # TYPE clock_test_gauge_seconds gauge\n\
             clock_test_gauge_seconds{peer=\"192.0.2.1\"} -0.087\n\
             clock_test_gauge_seconds{peer=\"a\\\"b\\\\c\\nd\"} 1.5\n\
             # HELP clock_test_requests_total A test counter.\n\
             # TYPE clock_test_requests_total counter\n\
             clock_test_requests_total 42\n"
        );
    }

    #[test]
    fn openmetrics_format_ends_with_eof_and_names_counter_family_without_total() {
        let out = encode(merge(sample()), Format::OpenMetrics);
        assert!(
            out.contains("# TYPE clock_test_requests counter\n"),
            "{out}"
        );
        assert!(out.contains("clock_test_requests_total 42\n"), "{out}");
        assert!(
            out.contains("clock_test_gauge_seconds{peer=\"192.0.2.1\"} -0.087\n"),
            "{out}"
        );
        assert!(out.ends_with("# EOF\n"), "{out}");
    }

    #[test]
    fn empty_family_keeps_only_metadata() {
        let out = encode(vec![E.family()], Format::Text);
        assert_eq!(
            out,
            "# HELP clock_test_empty Never filled.\n# TYPE clock_test_empty gauge\n"
        );
    }

    #[test]
    fn special_float_values_are_spelled_as_prometheus_expects() {
        let fams = vec![
            G.family()
                .with(labels!["nan"], f64::NAN)
                .with(labels!["inf"], f64::INFINITY)
                .with(labels!["ninf"], f64::NEG_INFINITY),
        ];
        let out = encode(fams, Format::Text);
        assert!(out.contains("{peer=\"nan\"} NaN\n"), "{out}");
        assert!(out.contains("{peer=\"inf\"} +Inf\n"), "{out}");
        assert!(out.contains("{peer=\"ninf\"} -Inf\n"), "{out}");
    }

    #[test]
    fn negotiation_follows_client_golang() {
        // Prometheus 2.x scrape header.
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prom)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(Format::negotiate(Some("text/plain")), Format::Text);
        assert_eq!(
            Format::negotiate(Some("text/plain;q=0.9, application/openmetrics-text;q=0.5")),
            Format::Text
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text; version=1.0.0")),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0")),
            Format::Text
        );
        assert_eq!(Format::negotiate(Some("application/json")), Format::Text);
        // Media types are case-insensitive (RFC 9110).
        assert_eq!(
            Format::negotiate(Some("Application/OpenMetrics-Text; version=1.0.0")),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::negotiate(Some("TEXT/PLAIN;q=0.9, application/openmetrics-text;q=0.5")),
            Format::Text
        );
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
        let shared = owned.clone().into_shared();
        assert!(matches!(shared.samples, Samples::Shared(_)));
        assert!(matches!(
            shared.samples[0].label_values[0],
            LabelValue::Shared(_)
        ));
        assert_eq!(shared, owned);
        assert!(same_text(&shared, &owned) && same_text(&shared, &shared.clone()));
        assert!(shared.samples.is_same_shared(&shared.clone().samples));
        assert!(
            !shared
                .samples
                .is_same_shared(&owned.clone().into_shared().samples)
        );
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
            .prop_map(|(f, shared)| if shared { f.into_shared() } else { f });
        proptest::collection::vec(family, 0..5).prop_map(merge)
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

        #[test]
        fn negotiation_never_panics(s in ".{0,300}") {
            let _ = Format::negotiate(Some(&s));
        }

        #[test]
        fn any_label_value_round_trips_through_text_escaping(v in "[^\u{0}]{0,64}") {
            let out = encode(vec![G.family().with(labels![v.clone()], 1.0)], Format::Text);
            let line = out.lines().nth(2).unwrap_or_default();
            let start = line.find("peer=\"").map(|i| i + 6).unwrap_or_default();
            let end = line.rfind("\"}").unwrap_or_default();
            let escaped = &line[start..end];
            let unescaped = escaped.replace("\\\\", "\u{0}").replace("\\\"", "\"").replace("\\n", "\n").replace('\u{0}', "\\");
            proptest::prop_assert_eq!(unescaped, v);
        }
    }
}
