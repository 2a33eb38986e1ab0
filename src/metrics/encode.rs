//! The two exposition formats: OpenMetrics 1.0 and the classic text format
//! 0.0.4, negotiated on `Accept` as client_golang does, both written by
//! `prometheus-client` from the same families.

use std::fmt;

use prometheus_client::collector::Collector as PcCollector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabel, EncodeLabelSet, EncodeMetric, LabelSetEncoder, MetricEncoder,
    NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{Family, Kind, LabelValue};

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
pub(super) fn encode_into(out: &mut String, registry: &Registry, format: Format) {
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

pub(super) fn write_eof(out: &mut String) {
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

pub(super) fn encode_each(
    families: &[Family],
    mut encoder: DescriptorEncoder,
) -> Result<(), fmt::Error> {
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
    use super::super::test_families::*;
    use super::super::{labels, merge};
    use super::*;

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

    proptest::proptest! {
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
