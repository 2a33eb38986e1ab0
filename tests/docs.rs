//! Keeps docs/metrics.md equal to the exporter's catalogue of series.

use std::path::Path;

const BEGIN: &str = "<!-- BEGIN GENERATED TABLE -->\n";
const END: &str = "<!-- END GENERATED TABLE -->";

#[test]
fn metrics_doc_lists_exactly_the_catalogue() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/metrics.md");
    let doc = std::fs::read_to_string(&path).expect("read docs/metrics.md");
    let start = doc.find(BEGIN).expect("begin marker") + BEGIN.len();
    let end = doc.find(END).expect("end marker");
    let table = clock_exporter::testing::metrics_table();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let updated = format!("{}{table}{}", &doc[..start], &doc[end..]);
        std::fs::write(&path, updated).expect("write docs/metrics.md");
        return;
    }
    assert_eq!(
        &doc[start..end],
        table,
        "docs/metrics.md is out of date: run UPDATE_GOLDEN=1 cargo test --test docs"
    );
}

#[test]
fn catalogue_names_follow_the_contract() {
    let catalogue = clock_exporter::testing::catalogue();
    let mut names: Vec<String> = catalogue.iter().map(|(d, _)| d.sample_name()).collect();
    let n = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), n, "a series name is declared twice");
    for (d, _) in catalogue {
        assert!(d.name.starts_with("clock_"), "{}", d.name);
        assert!(
            !d.name.ends_with("_total"),
            "{}: counters get _total from the encoder",
            d.name
        );
        assert!(
            !d.name.contains("_ms") && !d.name.contains("ppm") && !d.name.ends_with("_ratios"),
            "{}: base units only",
            d.name
        );
        assert!(
            d.help.ends_with('.')
                && d.help
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_uppercase() || c.is_ascii_digit()),
            "{}: help must be a full sentence: {:?}",
            d.name,
            d.help
        );
        if d.name.ends_with("_info") {
            assert!(!d.labels.is_empty(), "{}", d.name);
        }
    }
}
