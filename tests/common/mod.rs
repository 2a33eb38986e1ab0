//! What the test crates share, each reaching it the one way, `mod common;`:
//! the lab ([`lab`]: namespaces, real daemons, our exporter), and for
//! `tests/rules.rs` and `tests/alerting_e2e.rs` the repository's rule,
//! rule-test and dashboard files read into plain values and the unpacked
//! lab tools.

// Each test crate uses its own part of this module.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

// The lab lives in tests/lab/ (the benchmarks include it from there too);
// this is the only place a test crate includes it.
#[path = "../lab/mod.rs"]
pub mod lab;
// A CA made on the spot, for the web configuration's tests (it lives with
// the lab, which makes NTS certificates with it).
#[allow(unused_imports)] // tests/rules.rs names it `common::TempDir`
pub use lab::TempDir;
#[allow(unused_imports)]
pub use lab::ca;

use clock_exporter::testing::metrics::Desc;
use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

/// The repository root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Files directly in `dir` (relative to the repository) whose names end with
/// `suffix`, sorted.
pub fn files(dir: &str, suffix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(repo().join(dir))
        .unwrap_or_else(|e| panic!("reading {dir}: {e}"))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(suffix))
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no {dir}/*{suffix} files");
    out
}

/// `alerts/*.rules.yml`.
pub fn rule_files() -> Vec<PathBuf> {
    files("alerts", ".rules.yml")
}

/// Copies of `alerts/*.rules.yml` in `dir` whose groups evaluate at
/// `every` (e.g. "1s") instead of their own `interval:` (once a minute, the
/// day-long lookbacks every five): a lab that scrapes every second sees its
/// alerts go pending within seconds, as a fleet's would within a minute.
pub fn rule_files_evaluated_every(dir: &Path, every: &str) -> Vec<PathBuf> {
    rule_files()
        .iter()
        .map(|src| {
            let text = std::fs::read_to_string(src).expect("read rule file");
            let mut replaced = 0;
            let text: String = text
                .lines()
                .map(|l| {
                    if l.starts_with("    interval: ") {
                        replaced += 1;
                        format!("    interval: {every}\n")
                    } else {
                        format!("{l}\n")
                    }
                })
                .collect();
            assert!(replaced > 0, "{} declares no group interval", src.display());
            let dst = dir.join(src.file_name().expect("a file name"));
            std::fs::write(&dst, text).expect("write rule file");
            dst
        })
        .collect()
}

/// Percent-encodes a query-string value (RFC 3986's unreserved bytes
/// stay as they are).
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// One sample of a family in the text notation Prometheus and promtool
/// read: `name{first,label="value",…}`, where `first` (the target's labels,
/// or empty) comes before the family's own labels.
pub fn series_text(desc: &Desc, first: &str, values: &[&str]) -> String {
    let mut s = format!("{}{{{first}", desc.sample_name());
    for (k, v) in desc.labels.iter().zip(values) {
        let sep = if s.ends_with('{') { "" } else { "," };
        write!(s, "{sep}{k}=\"{v}\"").expect("write to a String");
    }
    s.push('}');
    s
}

/// `alerts/tests/*.test.yml`.
pub fn rule_test_files() -> Vec<PathBuf> {
    files("alerts/tests", ".test.yml")
}

/// The test-only rules the rule tests load besides the shipped ones: what
/// the exporter computes per daemon, spelled in PromQL from the raw series
/// (`alerts/tests/exporter-facts.rules.yml`).
pub fn test_only_rule_files() -> Vec<PathBuf> {
    files("alerts/tests", ".rules.yml")
}

/// `dashboards/*.json`.
pub fn dashboard_files() -> Vec<PathBuf> {
    files("dashboards", ".json")
}

/// The file's name, for messages.
pub fn name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Reads a single-document YAML file.
pub fn load_yaml(path: &Path) -> Yaml {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut docs =
        YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(docs.len(), 1, "{}: one YAML document", path.display());
    docs.remove(0)
}

/// A YAML mapping's string pairs (labels, annotations), sorted by key.
pub fn string_map(y: &Yaml) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = y
        .as_hash()
        .map(|h| {
            h.iter()
                .map(|(k, v)| {
                    let v = match v {
                        Yaml::String(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        Yaml::Real(r) => r.clone(),
                        Yaml::Boolean(b) => b.to_string(),
                        other => panic!("not a string value: {other:?}"),
                    };
                    (k.as_str().expect("string key").to_owned(), v)
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// One rule of a rule file.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The file it is in.
    pub file: String,
    /// Its group.
    pub group: String,
    /// `Some(name)` for an alerting rule.
    pub alert: Option<String>,
    /// `Some(name)` for a recording rule.
    pub record: Option<String>,
    /// The PromQL expression.
    pub expr: String,
    /// Labels the rule adds.
    pub labels: Vec<(String, String)>,
    /// Annotations of an alerting rule.
    pub annotations: Vec<(String, String)>,
}

impl Rule {
    /// A label or annotation value.
    pub fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
        pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Every rule of every rule file, in file and group order.
pub fn rules() -> Vec<Rule> {
    let mut out = Vec::new();
    for path in rule_files() {
        let doc = load_yaml(&path);
        for g in doc["groups"].as_vec().expect("groups") {
            let group = g["name"].as_str().expect("group name").to_owned();
            for r in g["rules"].as_vec().expect("rules") {
                out.push(Rule {
                    file: name(&path),
                    group: group.clone(),
                    alert: r["alert"].as_str().map(str::to_owned),
                    record: r["record"].as_str().map(str::to_owned),
                    expr: r["expr"].as_str().expect("expr").to_owned(),
                    labels: string_map(&r["labels"]),
                    annotations: string_map(&r["annotations"]),
                });
            }
        }
    }
    out
}

/// Names of the series the recording rules produce.
pub fn recorded_names() -> BTreeSet<String> {
    rules().into_iter().filter_map(|r| r.record).collect()
}

/// Reads a dashboard.
pub fn load_json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every panel of a dashboard, including those nested in rows.
pub fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().into_iter().flatten() {
        out.push(p);
        for nested in p["panels"].as_array().into_iter().flatten() {
            out.push(nested);
        }
    }
    out
}

/// One PromQL query of a dashboard panel.
#[derive(Debug, Clone)]
pub struct PanelQuery {
    /// The dashboard's file name.
    pub dashboard: String,
    /// The panel's title.
    pub panel: String,
    /// The target's refId.
    pub ref_id: String,
    /// The expression as written, with Grafana variables.
    pub raw: String,
}

/// Every panel target of every dashboard.
pub fn panel_queries() -> Vec<PanelQuery> {
    let mut out = Vec::new();
    for path in dashboard_files() {
        let d = load_json(&path);
        for p in panels(&d) {
            for t in p["targets"].as_array().into_iter().flatten() {
                out.push(PanelQuery {
                    dashboard: name(&path),
                    panel: p["title"].as_str().unwrap_or("").to_owned(),
                    ref_id: t["refId"].as_str().unwrap_or("").to_owned(),
                    raw: t["expr"].as_str().unwrap_or("").to_owned(),
                });
            }
        }
    }
    out
}

/// The selector of every `label_values(selector, label)` variable query.
pub fn variable_selectors() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for path in dashboard_files() {
        let d = load_json(&path);
        for v in d["templating"]["list"].as_array().into_iter().flatten() {
            if v["type"] != "query" {
                continue;
            }
            let q = v["query"]["query"]
                .as_str()
                .or_else(|| v["query"].as_str())
                .unwrap_or_else(|| panic!("{}: variable without query", name(&path)));
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|s| s.strip_suffix(')'))
                .unwrap_or_else(|| panic!("{}: unexpected variable query {q}", name(&path)));
            let selector = inner
                .rsplit_once(',')
                .map_or(inner, |(sel, _label)| sel)
                .trim();
            out.push((
                format!("{} variable {}", name(&path), v["name"]),
                selector.to_owned(),
            ));
        }
    }
    out
}

/// Every PromQL expression of the dashboards, panel queries and variable
/// selectors, each with where it is, Grafana variables unexpanded.
pub fn dashboard_expressions() -> Vec<(String, String)> {
    panel_queries()
        .into_iter()
        .map(|q| {
            (
                format!("{} panel {:?} {}", q.dashboard, q.panel, q.ref_id),
                q.raw,
            )
        })
        .chain(variable_selectors())
        .collect()
}

/// The values Grafana variables take when a dashboard query is sent to
/// Prometheus by a test: every multi-value variable as "all" (`.+`), the
/// interval variables as a duration Prometheus accepts.
pub const GRAFANA_VARIABLES: [(&str, &str); 7] = [
    ("job", ".+"),
    ("instance", ".+"),
    ("server", ".+"),
    ("__rate_interval", "1m"),
    ("__interval", "1m"),
    ("__range", "1h"),
    ("datasource", "prometheus"),
];

/// Replaces Grafana's `$name` and `${name}` with the given values; an
/// unknown variable is an error (a typo would otherwise reach Prometheus as
/// a literal `$name`). A `$` followed by a digit (`"$1"` in label_replace)
/// is PromQL's, not Grafana's, and is kept.
pub fn expand_grafana(expr: &str, vars: &[(&str, &str)]) -> Result<String, String> {
    let mut out = String::with_capacity(expr.len());
    let mut rest = expr;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (var, consumed) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {expr}"))?;
            (&braced[..end], end + 2)
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        if var.is_empty() || var.starts_with(|c: char| c.is_ascii_digit()) {
            out.push('$');
            rest = after;
            continue;
        }
        let value = vars
            .iter()
            .find(|(k, _)| *k == var)
            .map(|(_, v)| *v)
            .ok_or_else(|| format!("unknown Grafana variable ${var} in {expr}"))?;
        out.push_str(value);
        rest = &after[consumed..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The root of the unpacked lab (Prometheus, Alertmanager, promtool, amtool),
/// found once per test process by [`lab::root`]: `$CLOCK_LAB_ROOT`, or what
/// `scripts/lab-fetch` prints. A lab test never passes without its tools.
pub fn lab_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(lab::root)
}

/// A tool of the unpacked lab, `usr/bin/<name>`; panics when it is missing.
pub fn lab_tool(name: &str) -> PathBuf {
    let p = lab_root().join("usr/bin").join(name);
    assert!(
        p.is_file(),
        "{} is missing: run scripts/lab-fetch (it unpacks prometheus and prometheus-alertmanager)",
        p.display()
    );
    p
}

/// Runs a command to completion; returns its exit success and its combined
/// output, for assertions that quote it.
pub fn run(cmd: &mut Command) -> (bool, String) {
    let (status, text) = run_status(cmd);
    (status.success(), text)
}

/// [`run`], with the exit status itself (for tools whose exit codes say
/// more than success or failure).
pub fn run_status(cmd: &mut Command) -> (std::process::ExitStatus, String) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, text)
}
