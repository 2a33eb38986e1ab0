//! `deploy/kubernetes/`: each kustomization renders (`kubectl kustomize`,
//! offline), its Kubernetes objects validate against Kubernetes' schemas
//! (`kubernetes-validate`, strict) and its prometheus-operator objects
//! against the CRDs' (`@kubernetes-models/prometheus-operator`), the
//! DaemonSet keeps its promises (host network, read-only mounts, non-root,
//! no capabilities; the kernel-log collectors only in their overlay), and
//! the PrometheusRule is exactly `alerts/`' rules. The validators are
//! unpacked into the lab by `scripts/lab-fetch`.

mod common;

use std::process::Command;

use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

const KUSTOMIZATIONS: [&str; 3] = ["base", "overlays/kernel-log", "overlays/chrony-socket"];

/// The Kubernetes version the objects are validated against.
const KUBERNETES: &str = "1.30.0";

fn to_json(y: &Yaml) -> Value {
    match y {
        Yaml::Real(r) => r.parse::<f64>().map_or(Value::Null, Value::from),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::String(s) => Value::from(s.as_str()),
        Yaml::Boolean(b) => Value::from(*b),
        Yaml::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        Yaml::Hash(h) => Value::Object(
            h.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        Yaml::Boolean(b) => b.to_string(),
                        other => panic!("a key that is not a string: {other:?}"),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        _ => Value::Null,
    }
}

/// A directory of `deploy/kubernetes/`.
fn deploy(path: &str) -> std::path::PathBuf {
    common::repo().join("deploy/kubernetes").join(path)
}

/// `kubectl kustomize` of one kustomization: its YAML and its objects.
fn render(kustomization: &str) -> (String, Vec<Value>) {
    render_dir(&deploy(kustomization))
}

fn render_dir(dir: &std::path::Path) -> (String, Vec<Value>) {
    let kustomization = dir.display();
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl runs (scripts/lab-fetch installs it)");
    assert!(
        out.status.success(),
        "kubectl kustomize {kustomization}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let docs = YamlLoader::load_from_str(&text).expect("YAML");
    (text, docs.iter().map(to_json).collect())
}

fn find<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

/// A user's own kustomization in `dir`: the base with every component, as
/// docs/kubernetes.md shows (kustomize wants the paths relative).
fn all_components(dir: &std::path::Path) -> std::path::PathBuf {
    let k = dir.join("all");
    std::fs::create_dir_all(&k).expect("mkdir");
    // From k up to / (its components less the root), then down.
    let up = format!(
        "{}{}",
        "../".repeat(k.components().count() - 1),
        deploy("").display().to_string().trim_start_matches('/')
    );
    let up = up.trim_end_matches('/');
    std::fs::write(
        k.join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - {up}/base\ncomponents:\n  - {up}/components/chrony-socket\n  - {up}/components/kernel-log\n  - {up}/components/release-label\n"
        ),
    )
    .expect("write");
    k
}

/// Whether a collector is on with these flags: on by default, the last
/// of `--collector.NAME` and `--no-collector.NAME` wins, as the exporter
/// reads them (cli.rs tests that).
fn collector_on(args: &[&str], name: &str) -> bool {
    let on = format!("--collector.{name}");
    let off = format!("--no-collector.{name}");
    args.iter()
        .rev()
        .find(|a| **a == on || **a == off)
        .is_none_or(|a| *a == on)
}

fn args(daemonset: &Value) -> Vec<&str> {
    daemonset["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

#[test]
#[ignore = "needs kubectl and the lab's validators: run scripts/test"]
fn every_kustomization_renders_and_validates_offline() {
    let root = common::lab_root();
    let dir = common::TempDir::new("kubernetes");
    let combined = all_components(dir.path());
    let mut kustomizations: Vec<(String, std::path::PathBuf)> = KUSTOMIZATIONS
        .iter()
        .map(|k| (k.to_string(), deploy(k)))
        .collect();
    kustomizations.push(("base with every component".to_owned(), combined));
    for (k, path) in &kustomizations {
        let (_, objects) = render_dir(path);
        let kinds: Vec<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
        assert_eq!(
            kinds
                .iter()
                .copied()
                .collect::<std::collections::BTreeSet<_>>(),
            ["DaemonSet", "PrometheusRule", "Service", "ServiceMonitor"].into(),
            "{k}"
        );
        let mut core = Vec::new();
        let mut crds = Vec::new();
        for (i, o) in objects.iter().enumerate() {
            let file = dir.path().join(format!("{}-{i}.json", k.replace('/', "-")));
            std::fs::write(&file, o.to_string()).expect("write");
            if o["apiVersion"]
                .as_str()
                .is_some_and(|v| v.starts_with("monitoring.coreos.com/"))
            {
                crds.push(file);
            } else {
                core.push(file);
            }
        }
        let (ok, out) = common::run(
            Command::new("python3")
                .args(["-m", "kubernetes_validate", "--strict", "-k", KUBERNETES])
                .args(&core)
                .env("PYTHONPATH", root.join("opt/python")),
        );
        assert!(ok, "kubernetes-validate, {k}:\n{out}");
        assert_eq!(
            out.matches(" passed for resource ").count(),
            core.len(),
            "{k}:\n{out}"
        );
        let (ok, out) = common::run(
            Command::new("node")
                .arg(common::repo().join("tests/k8s/validate_crds.mjs"))
                .arg(root.join("opt/node/node_modules"))
                .args(&crds),
        );
        assert!(ok, "prometheus-operator schemas, {k}:\n{out}");
        assert_eq!(out.matches(" valid").count(), crds.len(), "{k}:\n{out}");
    }
}

#[test]
#[ignore = "needs kubectl: run scripts/test"]
fn the_daemonset_keeps_its_promises() {
    let (_, base) = render("base");
    let ds = find(&base, "DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
    for m in c["volumeMounts"].as_array().expect("mounts") {
        assert_eq!(m["readOnly"], true, "{m}");
    }
    let a = args(ds);
    for want in [
        "--path.procfs=/host/proc",
        "--path.sysfs=/host/sys",
        "--no-collector.kmsg",
        "--no-collector.ptp_kvm",
    ] {
        assert!(a.contains(&want), "{want} not in {a:?}");
    }
    // Every flag the manifests pass is one the exporter takes.
    let help = common::run(Command::new(env!("CARGO_BIN_EXE_clock_exporter")).arg("--help")).1;
    for k in KUSTOMIZATIONS {
        let (_, objects) = render(k);
        for flag in args(find(&objects, "DaemonSet")) {
            let name = flag.split('=').next().expect("flag");
            assert!(help.contains(name), "{k}: {name} is not a flag");
        }
    }
    assert!(!collector_on(&a, "kmsg") && !collector_on(&a, "ptp_kvm"));
    assert!(collector_on(&a, "timex") && collector_on(&a, "chrony"));
    // The kernel-log overlay turns the two collectors on, privileged.
    let (_, kernel) = render("overlays/kernel-log");
    check_kernel_log(find(&kernel, "DaemonSet"));
    // The chrony overlay mounts the socket directory and uses it.
    let (_, chrony) = render("overlays/chrony-socket");
    let ds = find(&chrony, "DaemonSet");
    check_chrony_socket(ds);
    assert!(!collector_on(&args(ds), "kmsg"), "chrony-socket alone");
    // Every component at once: each keeps what it does, and the release
    // label reaches the two objects kube-prometheus-stack selects by it.
    let dir = common::TempDir::new("kubernetes-all");
    let (_, all) = render_dir(&all_components(dir.path()));
    let ds = find(&all, "DaemonSet");
    check_kernel_log(ds);
    check_chrony_socket(ds);
    for kind in ["ServiceMonitor", "PrometheusRule"] {
        assert_eq!(
            find(&all, kind)["metadata"]["labels"]["release"],
            "kube-prometheus-stack",
            "{kind}"
        );
    }
    assert!(
        find(&all, "DaemonSet")["metadata"]["labels"]["release"].is_null(),
        "the label is for the operator's objects"
    );
}

fn check_kernel_log(ds: &Value) {
    let a = args(ds);
    assert!(
        collector_on(&a, "kmsg") && collector_on(&a, "ptp_kvm"),
        "{a:?}"
    );
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["containers"][0]["securityContext"]["privileged"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 0);
    // The rest of the base stays: the host's /proc and /sys, and timesyncd
    // off.
    assert!(a.contains(&"--path.procfs=/host/proc"), "{a:?}");
    assert!(!collector_on(&a, "timesyncd"), "{a:?}");
}

fn check_chrony_socket(ds: &Value) {
    assert!(args(ds).contains(&"--collector.chrony.socket=/run/chrony/chronyd.sock"));
    let pod = &ds["spec"]["template"]["spec"];
    let mounts = pod["containers"][0]["volumeMounts"].to_string();
    assert!(mounts.contains("/run/chrony"), "{mounts}");
    assert!(
        pod["securityContext"]["supplementalGroups"].is_array(),
        "{}",
        pod["securityContext"]
    );
}

/// The groups of the rule files, in order, as JSON.
fn alerts_groups() -> Vec<Value> {
    ["clock-recording.rules.yml", "clock-alerts.rules.yml"]
        .iter()
        .flat_map(|f| {
            let y = common::load_yaml(&common::repo().join("alerts").join(f));
            to_json(&y)["groups"].as_array().cloned().expect("groups")
        })
        .collect()
}

#[test]
fn the_prometheus_rule_is_exactly_the_rules_of_alerts() {
    let path = common::repo().join("deploy/kubernetes/base/prometheusrule.yaml");
    let committed = std::fs::read_to_string(&path).expect("read");
    let (ok, generated) =
        common::run(Command::new(common::repo().join("scripts/prometheus-rule")).arg("--stdout"));
    assert!(ok, "{generated}");
    assert!(
        committed == generated,
        "{} differs from alerts/: run scripts/prometheus-rule",
        path.display()
    );
    // And it means the same, not just reads the same.
    let y = common::load_yaml(&path);
    let rule = to_json(&y);
    assert_eq!(rule["kind"], "PrometheusRule");
    let groups = rule["spec"]["groups"].as_array().expect("groups");
    assert_eq!(groups, &alerts_groups());
    assert!(groups.len() >= 2);
}

#[test]
fn the_rule_files_are_listed_in_the_generator() {
    // A new rule file under alerts/ must reach the PrometheusRule too.
    let script =
        std::fs::read_to_string(common::repo().join("scripts/prometheus-rule")).expect("read");
    for f in common::rule_files() {
        let name = f.file_name().and_then(|n| n.to_str()).expect("name");
        assert!(
            script.contains(&format!("alerts/{name}")),
            "scripts/prometheus-rule does not include alerts/{name}"
        );
    }
}

/// PromQL that Prometheus itself marks experimental or that a ruler may
/// not have (Thanos' and Mimir's rulers evaluate the stable language).
const NOT_FOR_EVERY_RULER: [&str; 8] = [
    "limitk(",
    "limit_ratio(",
    "info(",
    "sort_by_label(",
    "sort_by_label_desc(",
    "double_exponential_smoothing(",
    "holt_winters(",
    "mad_over_time(",
];

#[test]
fn the_rules_use_nothing_a_thanos_or_mimir_ruler_lacks() {
    for group in alerts_groups() {
        let name = group["name"].as_str().expect("group name");
        let keys: Vec<&str> = group
            .as_object()
            .expect("group")
            .keys()
            .map(String::as_str)
            .collect();
        for k in &keys {
            assert!(
                ["name", "interval", "rules"].contains(k),
                "{name}: group field {k}"
            );
        }
        for rule in group["rules"].as_array().expect("rules") {
            for k in rule.as_object().expect("rule").keys() {
                assert!(
                    ["record", "alert", "expr", "for", "labels", "annotations"]
                        .contains(&k.as_str()),
                    "{name}: rule field {k} (keep_firing_for and the like are not everywhere)"
                );
            }
            let expr = rule["expr"].as_str().expect("expr");
            for f in NOT_FOR_EVERY_RULER {
                assert!(!expr.contains(f), "{name}: {f} in {expr}");
            }
            // The @ modifier is off by default before Prometheus 2.33 and
            // in older rulers.
            assert!(
                !expr.contains(" @ ") && !expr.contains("@ start()") && !expr.contains("@ end()"),
                "{name}: @ modifier in {expr}"
            );
        }
    }
}
