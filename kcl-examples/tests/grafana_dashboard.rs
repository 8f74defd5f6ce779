//! The Grafana dashboard for the Prometheus example (`kcl-examples/grafana/kcl-rs-dashboard.json`) stays in step
//! with the metrics catalogue (`kcl_core::telemetry::CATALOG`): every metric a query names exists, with the
//! instrument the query assumes (`rate`/`increase` on counters, `quantile` on histograms, which the Prometheus
//! exporter renders as summaries, neither on gauges), and every label a query groups or filters by is one of that
//! metric's labels. The dashboard has what Grafana's import needs (a datasource input, a uid, panels with targets).

use std::collections::BTreeSet;

use kcl_core::telemetry::{CATALOG, MetricDef, MetricKind};
use serde_json::Value;

fn dashboard() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/grafana/kcl-rs-dashboard.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("the dashboard file")).expect("the dashboard is JSON")
}

/// The `kcl_…` metric names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("kcl_") {
        let name: String =
            rest[at..].chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_').collect();
        rest = &rest[at + name.len()..];
        names.push(name);
    }
    names
}

/// The labels a PromQL expression groups by (`by (a, b)`) or matches on (`{a=~"…"}`).
fn labels(expr: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for part in expr.split("by (").skip(1) {
        let list = part.split(')').next().unwrap_or("");
        found.extend(list.split(',').map(|l| l.trim().to_owned()).filter(|l| !l.is_empty()));
    }
    for part in expr.split('{').skip(1) {
        let matchers = part.split('}').next().unwrap_or("");
        for matcher in matchers.split(',') {
            let label: String = matcher.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !label.is_empty() {
                found.insert(label);
            }
        }
    }
    found
}

#[test]
fn the_parsers_find_names_and_labels() {
    let expr = r#"sum by (stream, kind) (rate(kcl_process_failures_total{stream=~"$stream"}[5m])) / kcl_leases_held"#;
    assert_eq!(metric_names(expr), ["kcl_process_failures_total", "kcl_leases_held"]);
    assert_eq!(labels(expr), BTreeSet::from(["kind".to_owned(), "stream".to_owned()]));
}

#[test]
fn every_query_names_catalogued_metrics_with_their_labels_and_instrument() {
    let dashboard = dashboard();
    assert!(dashboard["uid"].as_str().is_some_and(|u| !u.is_empty()));
    assert!(dashboard["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(dashboard["schemaVersion"].as_u64().is_some());
    assert_eq!(dashboard["__inputs"][0]["pluginId"], "prometheus", "import asks for a Prometheus datasource");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8, "{} panels", panels.len());
    let mut used = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().expect("a panel title");
        assert!(panel["gridPos"]["w"].as_u64().is_some(), "{title}: gridPos");
        let targets = panel["targets"].as_array().filter(|t| !t.is_empty()).expect("targets");
        for target in targets {
            let expr = target["expr"].as_str().expect("a PromQL expression");
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{title}: {expr} names no kcl metric");
            for name in names {
                let def: &MetricDef = CATALOG
                    .iter()
                    .find(|d| d.name == name)
                    .unwrap_or_else(|| panic!("{title}: {name} is not in the metrics catalogue"));
                let rated = expr.contains(&format!("rate({name}")) || expr.contains(&format!("increase({name}"));
                match def.kind {
                    MetricKind::Counter => assert!(rated, "{title}: counter {name} needs rate() or increase()"),
                    MetricKind::Gauge => assert!(!rated, "{title}: gauge {name} under rate()"),
                    MetricKind::Histogram => assert!(expr.contains("quantile="), "{title}: {name} is a summary"),
                }
                let allowed: BTreeSet<&str> = def
                    .labels
                    .iter()
                    .copied()
                    .chain(matches!(def.kind, MetricKind::Histogram).then_some("quantile"))
                    .collect();
                for label in labels(expr) {
                    assert!(allowed.contains(label.as_str()), "{title}: {name} has no label {label} ({allowed:?})");
                }
                used.insert(name);
            }
        }
    }
    // The headline series a user looks for first are there.
    for name in ["kcl_records_processed_total", "kcl_millis_behind_latest", "kcl_leases_held", "kcl_unreadable_leases"]
    {
        assert!(used.contains(name), "the dashboard shows {name}");
    }
}
