//! The alert rules, recording rules, Alertmanager example and dashboards are
//! code: these tests prove that every metric they name is one the exporter
//! emits (or a recording rule produces), that every alert is documented and
//! unit-tested both ways, that the dashboards are well formed, and, with the
//! lab's promtool and amtool, that Prometheus' own parser and rule tests
//! accept them.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::process::Command;

use clock_exporter::testing::collector::timex;
use clock_exporter::testing::metrics::{Desc, LabelValue};
use clock_exporter::testing::model::{self, PeerKind, PeerState};
use common::{
    GRAFANA_VARIABLES, Rule, expand_grafana, lab_tool, load_json, load_yaml, name, panels,
    rule_files, rule_test_files, rules, run, test_only_rule_files,
};
use promql_parser::label::MatchOp;
use promql_parser::parser::{self, Expr, VectorSelector};
use promql_parser::util::{ExprVisitor, walk_expr};

/// Where every runbook_url points, followed by `#<alertname in lower case>`.
const RUNBOOK_BASE: &str = "https://example.invalid/clock_exporter/blob/main/docs/runbooks.md";

/// Series that neither the exporter nor a recording rule produces, and that
/// rules and dashboards may still name: Prometheus writes them itself.
const PROMETHEUS_SERIES: [&str; 3] = [
    "up",                      // per target, by every scrape (ClockExporterDown)
    "scrape_duration_seconds", // per target, by every scrape (ClockOffsetFromPrometheus)
    "ALERTS",                  // per alert, by the rule manager (the "firing alerts" panels)
];

/// Labels every series carries besides its own: the target's, and the
/// target labels the rules honour (documented in clock-alerts.rules.yml).
const TARGET_LABELS: [&str; 5] = [
    "instance",
    "job",
    "clock_min_sources",
    "clock_daemon_expected",
    "prober",
];

/// The stable uid of each dashboard: links and provisioned copies use them.
const DASHBOARD_UIDS: [(&str, &str); 3] = [
    ("clock-fleet.json", "clock-exporter-fleet"),
    ("clock-host.json", "clock-exporter-host"),
    ("clock-ntp-servers.json", "clock-exporter-ntp-servers"),
];

/// Every family a scrape can emit: the catalogue of the registered
/// collectors, which includes the daemon-agnostic `model` families the ntpd
/// and chrony collectors fill.
fn emitted() -> BTreeMap<String, &'static Desc> {
    let mut out = BTreeMap::new();
    for (d, _) in clock_exporter::testing::catalogue() {
        out.insert(d.sample_name(), d);
    }
    out
}

/// Every vector selector of an expression (those inside range selectors too).
fn selectors(expr: &str) -> Result<Vec<VectorSelector>, String> {
    struct Collect(Vec<VectorSelector>);
    impl ExprVisitor for Collect {
        type Error = std::convert::Infallible;
        fn pre_visit(&mut self, e: &Expr) -> Result<bool, Self::Error> {
            match e {
                Expr::VectorSelector(vs) => self.0.push(vs.clone()),
                Expr::MatrixSelector(ms) => self.0.push(ms.vs.clone()),
                _ => {}
            }
            Ok(true)
        }
    }
    let ast = parser::parse(expr)?;
    let mut c = Collect(Vec::new());
    let Ok(_) = walk_expr(&mut c, &ast);
    Ok(c.0)
}

/// The metric a selector names: its name, or an equality on `__name__`.
fn metric_name(vs: &VectorSelector) -> Option<String> {
    vs.name.clone().or_else(|| {
        vs.matchers
            .matchers
            .iter()
            .find(|m| m.name == "__name__" && matches!(m.op, MatchOp::Equal))
            .map(|m| m.value.clone())
    })
}

/// The label values a label of a catalogued family can take, where the
/// exporter fixes them; `None` for free-form labels.
fn vocabulary(metric: &str, label: &str) -> Option<Vec<String>> {
    let owned = |v: Vec<&str>| Some(v.into_iter().map(str::to_owned).collect());
    match (metric, label) {
        ("clock_peer_state", "state") => owned(PeerState::ALL.iter().map(|s| s.label()).collect()),
        ("clock_peer_info", "kind") => owned(
            [
                PeerKind::Server,
                PeerKind::Peer,
                PeerKind::Pool,
                PeerKind::Refclock,
                PeerKind::Local,
            ]
            .iter()
            .map(|k| k.label())
            .collect(),
        ),
        ("clock_timex_status_flag", "flag") => {
            owned(timex::STATUS_FLAGS.iter().map(|(n, _)| *n).collect())
        }
        ("clock_timex_state", "state") => owned(timex::STATES.to_vec()),
        _ => None,
    }
}

/// Checks one expression: it parses, names at least one metric, and every
/// metric it names is emitted, recorded or Prometheus' own; labels matched on
/// a catalogued family are its labels, with values from its vocabulary.
fn check_expression(
    what: &str,
    expr: &str,
    emitted: &BTreeMap<String, &'static Desc>,
    recorded: &BTreeSet<String>,
    problems: &mut Vec<String>,
) -> BTreeSet<String> {
    let sels = match selectors(expr) {
        Ok(s) => s,
        Err(e) => {
            problems.push(format!("{what}: does not parse: {e}\n  {expr}"));
            return BTreeSet::new();
        }
    };
    if sels.is_empty() {
        problems.push(format!("{what}: names no metric: {expr}"));
    }
    let mut names = BTreeSet::new();
    for vs in &sels {
        let Some(metric) = metric_name(vs) else {
            problems.push(format!(
                "{what}: a selector without a metric name cannot be checked: {vs}"
            ));
            continue;
        };
        names.insert(metric.clone());
        if let Some(desc) = emitted.get(&metric) {
            for m in &vs.matchers.matchers {
                if m.name == "__name__" {
                    continue;
                }
                if !desc.labels.contains(&m.name.as_str())
                    && !TARGET_LABELS.contains(&m.name.as_str())
                {
                    problems.push(format!(
                        "{what}: {metric} has no label {:?} (it has {:?})",
                        m.name, desc.labels
                    ));
                }
                let Some(vocab) = vocabulary(desc.name, &m.name) else {
                    continue;
                };
                // Equality values, and the alternatives of a plain `a|b|c` regex.
                let values: Vec<&str> = match &m.op {
                    MatchOp::Equal | MatchOp::NotEqual => vec![m.value.as_str()],
                    MatchOp::Re(_) | MatchOp::NotRe(_)
                        if m.value
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '|') =>
                    {
                        m.value.split('|').collect()
                    }
                    _ => Vec::new(),
                };
                for v in values {
                    if !vocab.iter().any(|x| x == v) {
                        problems.push(format!(
                            "{what}: {metric}{{{}}} is never {v:?} (values: {vocab:?})",
                            m.name
                        ));
                    }
                }
            }
        } else if !recorded.contains(&metric) && !PROMETHEUS_SERIES.contains(&metric.as_str()) {
            problems.push(format!(
                "{what}: {metric} is neither emitted by the exporter nor recorded by a rule"
            ));
        }
    }
    names
}

#[test]
fn every_metric_in_rules_and_dashboards_is_emitted_or_recorded() {
    let emitted = emitted();
    let recorded = common::recorded_names();
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();

    let all_rules = rules();
    assert!(all_rules.len() >= 30, "only {} rules read", all_rules.len());
    for r in &all_rules {
        let what = format!(
            "{} {}",
            r.file,
            r.alert.as_deref().or(r.record.as_deref()).unwrap_or("?")
        );
        used.extend(check_expression(
            &what,
            &r.expr,
            &emitted,
            &recorded,
            &mut problems,
        ));
    }
    let exprs = common::dashboard_expressions();
    assert!(
        exprs.len() >= 40,
        "only {} dashboard queries read",
        exprs.len()
    );
    for (what, raw) in &exprs {
        match expand_grafana(raw, &GRAFANA_VARIABLES) {
            Ok(expr) => {
                used.extend(check_expression(
                    what,
                    &expr,
                    &emitted,
                    &recorded,
                    &mut problems,
                ));
            }
            Err(e) => problems.push(format!("{what}: {e}")),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // Every recording rule is used by an alert or a dashboard: a recording
    // nobody reads is load on Prometheus for nothing.
    let unused: Vec<&String> = recorded.iter().filter(|r| !used.contains(*r)).collect();
    assert!(unused.is_empty(), "recorded but never used: {unused:?}");
}

#[test]
fn the_checker_rejects_unknown_metrics_labels_and_values() {
    // The checker above must be able to fail: feed it one mistake of each kind.
    let emitted = emitted();
    let recorded = common::recorded_names();
    for (expr, expected) in [
        ("clock_peer_offset_seconds", None),
        (
            "clock_peer_ofset_seconds",
            Some("neither emitted by the exporter nor recorded"),
        ),
        (
            "rate(clock_server_requests[5m])",
            Some("neither emitted by the exporter nor recorded"),
        ),
        (
            "clock_peer_state{status=\"selected\"}",
            Some("has no label"),
        ),
        (
            "clock_peer_state{state=~\"selected|falsetick\"}",
            Some("is never \"falsetick\""),
        ),
        (
            "clock_timex_status_flag{flag=\"UNSYNC\"}",
            Some("is never \"UNSYNC\""),
        ),
        ("sum(", Some("does not parse")),
        ("{job=\"clock\"}", Some("without a metric name")),
    ] {
        let mut problems = Vec::new();
        check_expression("probe", expr, &emitted, &recorded, &mut problems);
        match expected {
            None => assert!(problems.is_empty(), "{expr}: {problems:?}"),
            Some(needle) => assert!(
                problems.iter().any(|p| p.contains(needle)),
                "{expr}: expected a problem containing {needle:?}, got {problems:?}"
            ),
        }
    }
}

/// Alert names and their severities, from the rule files.
fn alerts() -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in rules() {
        if let Some(a) = &r.alert {
            let sev = Rule::get(&r.labels, "severity").unwrap_or("").to_owned();
            out.entry(a.clone()).or_default().insert(sev);
        }
    }
    out
}

#[test]
fn every_alert_has_severity_values_and_a_runbook_section() {
    let runbooks = fs::read_to_string(common::repo().join("docs/runbooks.md")).expect("runbooks");
    let sections: BTreeSet<&str> = runbooks
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(str::trim)
        .collect();
    let mut problems = Vec::new();
    for r in rules() {
        let Some(alert) = &r.alert else { continue };
        let sev = Rule::get(&r.labels, "severity");
        if !matches!(sev, Some("critical" | "warning" | "info")) {
            problems.push(format!("{alert}: severity {sev:?}"));
        }
        for key in ["summary", "description"] {
            match Rule::get(&r.annotations, key) {
                // Quoting values means a template: a label or a value.
                Some(text) if text.contains("{{") => {}
                other => problems.push(format!("{alert}: {key} quotes no value: {other:?}")),
            }
        }
        let expected_url = format!("{RUNBOOK_BASE}#{}", alert.to_lowercase());
        if Rule::get(&r.annotations, "runbook_url") != Some(expected_url.as_str()) {
            problems.push(format!(
                "{alert}: runbook_url {:?}, expected {expected_url}",
                Rule::get(&r.annotations, "runbook_url")
            ));
        }
        // GitHub's anchor of "## ClockFoo" is "#clockfoo".
        if !sections.contains(alert.as_str()) {
            problems.push(format!("docs/runbooks.md has no section \"## {alert}\""));
        }
    }
    // Each alert's section says what it means, how to confirm it by hand,
    // the remedy, and when not to act.
    for (i, part) in runbooks.split("\n## ").enumerate().skip(1) {
        let title = part.lines().next().unwrap_or("").trim();
        if !title.starts_with("Clock") {
            continue;
        }
        for needle in ["**Means", "**Confirm:**", "**Remedy:**", "**Do not act**"] {
            if !part.contains(needle) {
                problems.push(format!(
                    "docs/runbooks.md section {i} ({title}) lacks {needle}"
                ));
            }
        }
    }
    let names = alerts();
    for s in &sections {
        if s.starts_with("Clock") && !names.contains_key(*s) {
            problems.push(format!("docs/runbooks.md section {s:?} names no alert"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_alert_has_firing_and_quiet_unit_tests() {
    // (alert, severity) pairs some test expects to fire, and alerts some test
    // expects to stay quiet.
    let mut fired: BTreeSet<(String, String)> = BTreeSet::new();
    let mut quiet: BTreeSet<String> = BTreeSet::new();
    for path in rule_test_files() {
        let doc = load_yaml(&path);
        for t in doc["tests"].as_vec().expect("tests") {
            for a in t["alert_rule_test"].as_vec().into_iter().flatten() {
                let alert = a["alertname"].as_str().expect("alertname").to_owned();
                let exp = a["exp_alerts"].as_vec().map_or(&[][..], Vec::as_slice);
                if exp.is_empty() {
                    quiet.insert(alert.clone());
                }
                for e in exp {
                    let labels = common::string_map(&e["exp_labels"]);
                    let sev = Rule::get(&labels, "severity").unwrap_or("").to_owned();
                    fired.insert((alert.clone(), sev));
                    let ann = common::string_map(&e["exp_annotations"]);
                    assert!(
                        Rule::get(&ann, "summary").is_some()
                            && Rule::get(&ann, "runbook_url").is_some(),
                        "{}: {alert} is expected without its annotations",
                        name(&path)
                    );
                }
            }
        }
    }
    let mut missing = Vec::new();
    for (alert, severities) in alerts() {
        for sev in severities {
            if !fired.contains(&(alert.clone(), sev.clone())) {
                missing.push(format!("{alert} ({sev}) is never expected to fire"));
            }
        }
        if !quiet.contains(&alert) {
            missing.push(format!("{alert} is never expected to stay quiet"));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn rule_tests_load_every_rule_file_and_evaluate_recordings_first() {
    // Prometheus runs groups concurrently; promtool, without group_eval_order,
    // in random order, so an alert reading a recording flaps between runs.
    let mut groups: Vec<(String, bool)> = Vec::new();
    for r in rules() {
        match groups.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, alerting)) => *alerting |= r.alert.is_some(),
            None => groups.push((r.group.clone(), r.alert.is_some())),
        }
    }
    // The test-only rules (the exporter's facts from raw series) come first.
    for path in test_only_rule_files() {
        for g in load_yaml(&path)["groups"].as_vec().expect("groups") {
            let group = g["name"].as_str().expect("group name").to_owned();
            let alerting = g["rules"]
                .as_vec()
                .expect("rules")
                .iter()
                .any(|r| r["alert"].as_str().is_some());
            assert!(!alerting, "{}: {group} alerts", name(&path));
            groups.insert(0, (group, false));
        }
    }
    let all_files: BTreeSet<String> = rule_files()
        .iter()
        .chain(&test_only_rule_files())
        .map(|p| name(p))
        .collect();
    for path in rule_test_files() {
        let doc = load_yaml(&path);
        let files: BTreeSet<String> = doc["rule_files"]
            .as_vec()
            .expect("rule_files")
            .iter()
            .map(|f| {
                f.as_str()
                    .expect("path")
                    .rsplit('/')
                    .next()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect();
        assert_eq!(files, all_files, "{}: rule_files", name(&path));
        let order: Vec<&str> = doc["group_eval_order"]
            .as_vec()
            .unwrap_or_else(|| panic!("{}: no group_eval_order", name(&path)))
            .iter()
            .map(|g| g.as_str().expect("group name"))
            .collect();
        let listed: BTreeSet<&str> = order.iter().copied().collect();
        let defined: BTreeSet<&str> = groups.iter().map(|(g, _)| g.as_str()).collect();
        assert_eq!(listed, defined, "{}: group_eval_order", name(&path));
        let first_alerting = order
            .iter()
            .position(|g| groups.iter().any(|(n, a)| n == g && *a))
            .expect("an alerting group");
        for g in &order[first_alerting..] {
            assert!(
                groups.iter().any(|(n, a)| n == g && *a),
                "{}: recording group {g} is evaluated after an alerting group",
                name(&path)
            );
        }
    }
}

/// A panel's rectangle on Grafana's 24-column grid.
#[derive(Debug, Clone, Copy)]
struct Rect {
    x: i64,
    y: i64,
    width: i64,
    height: i64,
}

impl Rect {
    fn of(panel: &serde_json::Value) -> Rect {
        let n = |k: &str| panel["gridPos"][k].as_i64().unwrap_or(-1);
        Rect {
            x: n("x"),
            y: n("y"),
            width: n("w"),
            height: n("h"),
        }
    }

    fn on_grid(self) -> bool {
        self.x >= 0 && self.y >= 0 && self.width > 0 && self.height > 0 && self.x + self.width <= 24
    }

    fn overlaps(self, o: Rect) -> bool {
        self.x < o.x + o.width
            && o.x < self.x + self.width
            && self.y < o.y + o.height
            && o.y < self.y + self.height
    }
}

/// The dashboard-level checks: uid, title, the datasource, job and instance
/// variables. Returns the variables a query may use.
fn check_dashboard_header(
    file: &str,
    d: &serde_json::Value,
    problems: &mut Vec<String>,
) -> Vec<String> {
    let uid = DASHBOARD_UIDS
        .iter()
        .find(|(f, _)| *f == file)
        .map(|(_, u)| *u);
    if d["uid"].as_str() != uid {
        problems.push(format!("{file}: uid {} instead of {uid:?}", d["uid"]));
    }
    if d["title"].as_str().is_none_or(str::is_empty) {
        problems.push(format!("{file}: no title"));
    }
    let vars = d["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let var = |n: &str| vars.iter().find(|v| v["name"] == n);
    // No data source is named anywhere: the variable starts on Grafana's
    // default Prometheus data source, so the same file imports (Grafana's
    // form then asks nothing, there being no `__inputs`) and provisions, as
    // the README and docs/alerts-and-dashboards.md say.
    match var("datasource") {
        Some(v)
            if v["type"] == "datasource"
                && v["query"] == "prometheus"
                && v["current"]
                    .as_object()
                    .is_none_or(serde_json::Map::is_empty) => {}
        other => problems.push(format!(
            "{file}: no Prometheus datasource variable starting on the default: {other:?}"
        )),
    }
    if d.get("__inputs").is_some() {
        problems.push(format!(
            "{file}: __inputs: the README says import asks nothing; change it with them"
        ));
    }
    for n in ["job", "instance"] {
        match var(n) {
            Some(v) if v["type"] == "query" && v["datasource"]["uid"] == "${datasource}" => {}
            other => problems.push(format!("{file}: variable {n}: {other:?}")),
        }
    }
    // The dashboard's own variables and Grafana's interval variables.
    vars.iter()
        .filter_map(|v| v["name"].as_str().map(str::to_owned))
        .chain(["__rate_interval", "__interval", "__range"].map(str::to_owned))
        .collect()
}

/// The checks of one panel: title, id, description, unit, datasource, and
/// its queries' datasource, refIds and variables.
fn check_panel(
    what: &str,
    p: &serde_json::Value,
    ids: &mut BTreeSet<i64>,
    known: &[(&str, &str)],
    problems: &mut Vec<String>,
) {
    match p["id"].as_i64() {
        Some(id) if ids.insert(id) => {}
        other => problems.push(format!("{what}: id {other:?} missing or repeated")),
    }
    if p["type"] == "row" {
        // A row is a heading: a title and a full-width line of the grid.
        if p["gridPos"]["w"] != 24 || p["gridPos"]["h"] != 1 {
            problems.push(format!(
                "{what}: a row {} is not one full line",
                p["gridPos"]
            ));
        }
        return;
    }
    if p["description"].as_str().is_none_or(|s| s.len() < 20) {
        problems.push(format!("{what}: no plain-words description"));
    }
    if p["fieldConfig"]["defaults"]["unit"]
        .as_str()
        .is_none_or(str::is_empty)
    {
        problems.push(format!("{what}: no unit"));
    }
    if p["datasource"]["uid"] != "${datasource}" {
        problems.push(format!("{what}: datasource {}", p["datasource"]));
    }
    let targets = p["targets"].as_array().cloned().unwrap_or_default();
    if targets.is_empty() {
        problems.push(format!("{what}: no query"));
    }
    let mut refs = BTreeSet::new();
    for t in &targets {
        if !refs.insert(t["refId"].as_str().unwrap_or("").to_owned()) {
            problems.push(format!("{what}: refId {} repeated", t["refId"]));
        }
        if t["datasource"]["uid"] != "${datasource}" {
            problems.push(format!("{what}: target on datasource {}", t["datasource"]));
        }
        if let Err(e) = expand_grafana(t["expr"].as_str().unwrap_or(""), known) {
            problems.push(format!("{what}: {e}"));
        }
    }
}

#[test]
fn dashboards_are_well_formed() {
    let files = common::dashboard_files();
    let found: BTreeSet<String> = files.iter().map(|p| name(p)).collect();
    let expected: BTreeSet<String> = DASHBOARD_UIDS
        .iter()
        .map(|(f, _)| (*f).to_owned())
        .collect();
    assert_eq!(found, expected, "dashboard files");
    let mut problems = Vec::new();
    for path in &files {
        let file = name(path);
        let dashboard = load_json(path);
        let variables = check_dashboard_header(&file, &dashboard, &mut problems);
        let known: Vec<(&str, &str)> = variables.iter().map(|v| (v.as_str(), "x")).collect();
        let ps = panels(&dashboard);
        assert!(ps.len() >= 5, "{file}: only {} panels", ps.len());
        let mut ids = BTreeSet::new();
        for (i, p) in ps.iter().enumerate() {
            let title = p["title"].as_str().unwrap_or("");
            if title.is_empty() {
                problems.push(format!("{file}: panel {i} has no title"));
            }
            let what = format!("{file} panel {title:?}");
            check_panel(&what, p, &mut ids, &known, &mut problems);
            let rect = Rect::of(p);
            if !rect.on_grid() {
                problems.push(format!("{what}: gridPos {rect:?} off the grid"));
            }
            for q in &ps[..i] {
                if rect.overlaps(Rect::of(q)) {
                    problems.push(format!("{what} overlaps panel {}", q["title"]));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn grafana_variables_expand_and_unknown_ones_are_refused() {
    let vars = [("job", "clock"), ("__rate_interval", "1m")];
    assert_eq!(
        expand_grafana(
            r#"rate(x{job=~"$job"}[$__rate_interval]) + label_replace(y, "a", "$1", "b", "(.*)")"#,
            &vars
        ),
        Ok(r#"rate(x{job=~"clock"}[1m]) + label_replace(y, "a", "$1", "b", "(.*)")"#.to_owned())
    );
    assert_eq!(
        expand_grafana("x{job=~\"${job}\"}", &vars),
        Ok("x{job=~\"clock\"}".to_owned())
    );
    assert!(expand_grafana("x{instance=~\"$instanse\"}", &vars).is_err());
}

#[test]
#[ignore = "needs the lab: run scripts/test"]
fn promtool_checks_and_unit_tests_every_rule_file() {
    let promtool = lab_tool("promtool");
    let checked = [rule_files(), test_only_rule_files()].concat();
    for (command, files) in [("check", checked), ("test", rule_test_files())] {
        for f in files {
            let (ok, out) = run(Command::new(&promtool).arg(command).arg("rules").arg(&f));
            assert!(
                ok && out.contains("SUCCESS"),
                "promtool {command} rules {}:\n{out}",
                f.display()
            );
        }
    }
}

#[test]
#[ignore = "needs the lab: run scripts/test"]
fn promtool_parses_every_dashboard_query() {
    // Prometheus' own parser, through promtool: each query becomes a
    // recording rule of a scratch rule file.
    let promtool = lab_tool("promtool");
    let dir = common::TempDir::new("dashboard-queries");
    let mut yaml = String::from("groups:\n  - name: dashboard-queries\n    rules:\n");
    let mut n = 0;
    let exprs = common::dashboard_expressions();
    for (what, raw) in exprs {
        let expr =
            expand_grafana(&raw, &GRAFANA_VARIABLES).unwrap_or_else(|e| panic!("{what}: {e}"));
        n += 1;
        // A JSON string is a valid YAML double-quoted scalar.
        writeln!(
            yaml,
            "      - record: dashboard_query_{n}\n        expr: {}",
            serde_json::to_string(&expr).expect("json")
        )
        .expect("write to a String");
    }
    let file = dir.path().join("dashboards.rules.yml");
    fs::write(&file, yaml).expect("write");
    let (ok, out) = run(Command::new(&promtool).arg("check").arg("rules").arg(&file));
    assert!(
        ok && out.contains(&format!("SUCCESS: {n} rules found")),
        "promtool rejects a dashboard query:\n{out}"
    );
}

#[test]
#[ignore = "needs the lab: run scripts/test"]
fn alertmanager_example_is_valid_and_routes_as_documented() {
    let amtool = lab_tool("amtool");
    let config = common::repo().join("alerts/alertmanager.example.yml");
    let (ok, out) = run(Command::new(&amtool).arg("check-config").arg(&config));
    assert!(ok && out.contains("SUCCESS"), "amtool check-config:\n{out}");
    for (labels, receiver) in [
        // Peer alerts, grouped by server: pages only when critical.
        (
            "alertname=ClockPeerFalseticker severity=warning instance=pc:9857 peer=192.0.2.12",
            "tickets",
        ),
        (
            "alertname=ClockServerRejectedByClients severity=critical peer=192.0.2.12",
            "pager",
        ),
        (
            "alertname=ClockServerFarFromClients severity=critical peer=192.0.2.12",
            "pager",
        ),
        // A client the wrong server left without a majority: paged in
        // that server's group, and without one on its own.
        (
            "alertname=ClockNoUsableSource severity=critical instance=ca:9857 daemon=chronyd peer=192.0.2.12",
            "pager",
        ),
        (
            "alertname=ClockNoUsableSource severity=critical instance=ca:9857 daemon=chronyd",
            "pager",
        ),
        (
            "alertname=ClockSourceFreeRunning severity=warning peer=192.0.2.15",
            "tickets",
        ),
        (
            "alertname=ClockDaemonDown severity=critical instance=a:9857",
            "pager",
        ),
        (
            "alertname=ClockSourceChanged severity=warning instance=a:9857",
            "tickets",
        ),
        (
            "alertname=ClockNtpServerOnKvmClock severity=info instance=vb:9857",
            "dashboards-only",
        ),
    ] {
        let (ok, out) = run(Command::new(&amtool)
            .args(["config", "routes", "test"])
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--verify.receivers={receiver}"))
            .args(labels.split(' ')));
        let routed = out.lines().next().unwrap_or("").trim();
        assert!(
            ok && routed == receiver,
            "{labels} routes to {routed:?}, not {receiver}:\n{out}"
        );
    }
}

/// A reachable server with an offset and an error bound.
fn fact_source(i: usize, state: PeerState, offset: f64, bound: f64) -> model::Peer {
    model::Peer {
        address: format!("192.0.2.{i}"),
        kind: PeerKind::Server,
        refid: "198.51.100.7".into(),
        state,
        stratum: Some(2),
        offset_seconds: Some(offset),
        delay_seconds: Some(0.001),
        jitter_seconds: Some(0.001),
        dispersion_seconds: None,
        error_bound_seconds: Some(bound),
        reachability_ratio: Some(1.0),
        poll_interval_seconds: Some(64.0),
        leap: Some(0),
        auth: None,
    }
}

/// A daemon's status: tracking 192.0.2.1, with the given leap status.
fn fact_sync(leap: Option<u8>) -> model::SyncStatus {
    model::SyncStatus {
        offset_seconds: Some(-0.000_3),
        stratum: Some(3),
        leap,
        root_delay_seconds: Some(0.02),
        root_dispersion_seconds: Some(0.004),
        reference: "192.0.2.1".into(),
        ..model::SyncStatus::default()
    }
}

fn fact_report(
    daemon: model::Daemon,
    sync: Option<model::SyncStatus>,
    peers: Vec<model::Peer>,
) -> model::DaemonReport {
    model::DaemonReport {
        daemon,
        sync,
        peers,
        server_requests_total: None,
    }
}

/// Reports for the facts cross-check: the seed, a daemon with no majority,
/// every kind of source that is left out, ties, and random ones.
fn facts_reports() -> Vec<model::DaemonReport> {
    use model::Daemon;
    let source = fact_source;
    let mut out = vec![
        // The seed: vA selected, vB 11.5 s ahead and rejected.
        fact_report(
            Daemon::Ntpd,
            Some(fact_sync(Some(0))),
            vec![
                source(11, PeerState::Selected, -0.087_076, 0.022_307_5),
                source(12, PeerState::Falseticker, 11.4876, 9.871_626_5),
            ],
        ),
        // No majority: both falseticker, unsynchronised.
        fact_report(
            Daemon::Chronyd,
            Some(fact_sync(Some(3))),
            vec![
                source(11, PeerState::Falseticker, -0.087, 0.02),
                source(12, PeerState::Falseticker, 11.49, 9.87),
            ],
        ),
        // Every interval contains the local clock: the larger |offset| is
        // the outlier.
        fact_report(
            Daemon::Chronyd,
            Some(fact_sync(Some(0))),
            vec![
                source(1, PeerState::Selected, 0.05, 0.1),
                source(2, PeerState::Candidate, -0.08, 0.1),
                source(3, PeerState::Candidate, 0.02, 0.1),
            ],
        ),
    ];
    // Left out of the comparison: unreachable, unbounded, the local clock;
    // a reference clock is compared, and no sync status at all.
    let mut unreachable = source(4, PeerState::Unreachable, 40.0, 0.1);
    unreachable.reachability_ratio = Some(0.0);
    let mut silent = source(5, PeerState::Unreachable, -40.0, 0.1);
    silent.reachability_ratio = None;
    let mut unbounded = source(6, PeerState::Rejected, -30.0, 0.1);
    unbounded.error_bound_seconds = None;
    let mut local = source(7, PeerState::Selected, 50.0, 0.0);
    local.kind = PeerKind::Local;
    local.address = "LOCL".into();
    let mut refclock = source(8, PeerState::Candidate, 0.000_2, 0.000_1);
    refclock.kind = PeerKind::Refclock;
    refclock.address = ".GPS.".into();
    out.push(fact_report(
        Daemon::Ntpd,
        None,
        vec![
            source(1, PeerState::Selected, 0.001, 0.002),
            unreachable,
            silent,
            unbounded,
            local,
            refclock,
        ],
    ));
    // A daemon that answers with no sources at all.
    out.push(fact_report(
        Daemon::Chronyd,
        Some(fact_sync(Some(0))),
        vec![],
    ));
    out.extend(random_reports());
    out
}

/// Reports with random sources, the same in every run.
fn random_reports() -> Vec<model::DaemonReport> {
    use model::Daemon;
    let mut out = Vec::new();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    for _ in 0..24 {
        let n = usize::try_from(next(7)).expect("small");
        let peers = (0..n)
            .map(|i| {
                let state = PeerState::ALL[usize::try_from(next(8)).expect("small")];
                let offset = (next(40_001) as f64 - 20_000.0) / 10_000.0;
                let bound = (next(10_000) as f64 + 1.0) / 10_000.0;
                let mut p = fact_source(i + 1, state, offset, bound);
                p.reachability_ratio = [None, Some(0.0), Some(0.5), Some(1.0)]
                    [usize::try_from(next(4)).expect("small")];
                if next(10) == 0 {
                    p.error_bound_seconds = None;
                }
                if next(8) == 0 {
                    p.kind = PeerKind::Local;
                }
                p
            })
            .collect();
        let leap = [None, Some(0), Some(3)][usize::try_from(next(3)).expect("small")];
        let daemon = if next(2) == 0 {
            Daemon::Ntpd
        } else {
            Daemon::Chronyd
        };
        out.push(fact_report(daemon, Some(fact_sync(leap)), peers));
    }
    out
}

#[test]
#[ignore = "needs the lab: run scripts/test"]
fn the_rule_tests_compute_the_facts_as_the_exporter_does() {
    // The promtool tests give only what a daemon reports and take the
    // exporter's per-daemon facts from alerts/tests/exporter-facts.rules.yml.
    // Here the exporter's model computes them for each report, and promtool
    // with that file from the same reports' raw series: both must agree,
    // series for series.
    let facts = [
        &model::USABLE_SOURCES,
        &model::WORST_CASE_ERROR,
        &model::SOURCE_INTERVAL_GAP,
        &model::SOURCE_OFFSET_SPREAD,
        &model::OUTLIER_SOURCE_OFFSET,
    ]
    .map(|d| d.name);
    let mut input = String::new();
    let mut expected: BTreeMap<&str, Vec<(String, f64)>> = BTreeMap::new();
    for (h, r) in facts_reports().iter().enumerate() {
        let mut fams = r.families();
        fams.push(model::up_family(r.daemon, true));
        for f in &fams {
            for s in &f.samples {
                let values: Vec<&str> = s.label_values.iter().map(LabelValue::as_str).collect();
                let series = common::series_text(
                    f.desc,
                    &format!("instance=\"h{h}:9857\",job=\"clock\""),
                    &values,
                );
                if let Some(fact) = facts.iter().find(|n| **n == f.desc.name) {
                    expected.entry(fact).or_default().push((series, s.value));
                } else {
                    writeln!(
                        input,
                        "      - series: '{series}'\n        values: '{}+0x5'",
                        s.value
                    )
                    .expect("write to a String");
                }
            }
        }
    }
    for fact in facts {
        assert!(
            expected.get(fact).is_some_and(|v| v.len() >= 3),
            "{fact}: the reports exercise it too little: {:?}",
            expected.get(fact)
        );
    }
    let mut tests = String::new();
    for fact in facts {
        write!(
            tests,
            "      - expr: {fact}\n        eval_time: 3m\n        exp_samples:\n"
        )
        .expect("write to a String");
        for (series, value) in &expected[fact] {
            writeln!(
                tests,
                "          - labels: '{series}'\n            value: {value:e}"
            )
            .expect("write to a String");
        }
    }
    let dir = common::TempDir::new("exporter-facts");
    let rules = common::repo().join("alerts/tests/exporter-facts.rules.yml");
    let file = dir.path().join("facts.test.yml");
    fs::write(
        &file,
        format!(
            "rule_files:\n  - {}\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n{input}    promql_expr_test:\n{tests}",
            rules.display()
        ),
    )
    .expect("write the test file");
    let (ok, out) = run(Command::new(lab_tool("promtool"))
        .arg("test")
        .arg("rules")
        .arg(&file));
    assert!(ok && out.contains("SUCCESS"), "promtool test rules:\n{out}");
}
