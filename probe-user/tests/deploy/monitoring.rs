//! deploy/prometheus and deploy/grafana: promtool accepts the configuration and the rules, and
//! their unit tests pass, with a firing and a quiet case for every alert; a real Prometheus
//! running that configuration (its hosts job pointed at a probe in a test namespace) evaluates
//! every rule without error, raises the alerts the probe's situation calls for and no other, and
//! answers every query of the dashboard (its variables substituted) with series that carry the
//! labels the panels group and name them by.

use std::{
    collections::BTreeSet,
    fs,
    net::Ipv4Addr,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use test_frames::arp_request;
use testbed::{Link, ProbeProcess, Prometheus, RECEIVER_IF, SENDER_V4, TempDir, http_get};

use crate::{PROBE, checked, deploy, send_loopback_frames, yaml_documents};

/// Inside the test's own namespace, so a fixed port collides with nothing.
const METRICS_ADDRESS: &str = "127.0.0.1:9464";

fn promtool(args: &[&str]) -> String {
    checked(
        Command::new("promtool")
            .args(args)
            .current_dir(deploy("prometheus")),
    )
}

/// The alerts of the rule file.
fn alert_names() -> BTreeSet<String> {
    yaml_documents(&deploy("prometheus/localnet-probe.rules.yml"))[0]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|group| group["rules"].as_array().expect("rules").clone())
        .map(|rule| rule["alert"].as_str().expect("an alert").to_owned())
        .collect()
}

#[test]
#[ignore = "needs root"]
fn promtool_accepts_the_configuration_and_the_rules_and_their_tests_pass() {
    let config = promtool(&["check", "config", "prometheus.yml"]);
    assert!(config.contains("SUCCESS: 1 rule files found"), "{config}");
    promtool(&["check", "rules", "localnet-probe.rules.yml"]);
    promtool(&["test", "rules", "localnet-probe.rules.test.yml"]);

    // Each alert has a case where it fires and one where it does not.
    let tests = yaml_documents(&deploy("prometheus/localnet-probe.rules.test.yml"));
    let cases: Vec<&Value> = tests[0]["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .flat_map(|test| test["alert_rule_test"].as_array().expect("alert tests"))
        .collect();
    for alert in alert_names() {
        let fired: Vec<bool> = cases
            .iter()
            .filter(|case| case["alertname"] == alert.as_str())
            .map(|case| {
                !case["exp_alerts"]
                    .as_array()
                    .expect("exp_alerts")
                    .is_empty()
            })
            .collect();
        assert!(
            fired.contains(&true) && fired.contains(&false),
            "{alert}: a case where it fires and one where it does not ({fired:?})"
        );
    }
}

/// The dashboard's queries and the Grafana variables in them put in: template variables match
/// any value, `$__rate_interval` and `$__range` are a minute and an hour.
struct Dashboard {
    json: Value,
    variables: Vec<String>,
}

impl Dashboard {
    fn read() -> Self {
        let json: Value = serde_json::from_str(
            &fs::read_to_string(deploy("grafana/localnet-probe.json")).expect("the dashboard"),
        )
        .expect("the dashboard is JSON");
        let variables = json["templating"]["list"]
            .as_array()
            .expect("template variables")
            .iter()
            .map(|variable| variable["name"].as_str().expect("a name").to_owned())
            .collect();
        Self { json, variables }
    }

    fn substitute(&self, expr: &str) -> String {
        let mut expr = expr
            .replace("$__rate_interval", "1m")
            .replace("$__range", "1h");
        for variable in &self.variables {
            expr = expr
                .replace(&format!("${{{variable}}}"), ".+")
                .replace(&format!("${variable}"), ".+");
        }
        assert!(!expr.contains('$'), "an undefined variable in {expr}");
        expr
    }

    /// (where, PromQL, labels the series carry): the panels' targets, and the query
    /// variables' `label_values(selector, label)`.
    fn queries(&self) -> Vec<(String, String, Vec<String>)> {
        let mut queries = Vec::new();
        for panel in self.json["panels"].as_array().expect("panels") {
            let title = panel["title"].as_str().expect("a title");
            assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
            for target in panel["targets"].as_array().expect("targets") {
                let expr = target["expr"].as_str().expect("an expr");
                let mut labels = grouped_by(expr);
                labels.extend(legend_labels(target["legendFormat"].as_str().unwrap_or("")));
                queries.push((title.to_owned(), self.substitute(expr), labels));
            }
        }
        for variable in self.json["templating"]["list"].as_array().unwrap() {
            if variable["type"] != "query" {
                continue;
            }
            let query = variable["query"]["query"].as_str().expect("a query");
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|rest| rest.strip_suffix(')'))
                .unwrap_or_else(|| panic!("not label_values(…): {query}"));
            let (selector, label) = inner.rsplit_once(',').expect("selector, label");
            queries.push((
                format!("variable {}", variable["name"]),
                self.substitute(selector.trim()),
                vec![label.trim().to_owned()],
            ));
        }
        queries
    }
}

/// The labels of every `by (…)` clause in `expr`.
fn grouped_by(expr: &str) -> Vec<String> {
    expr.match_indices("by (")
        .flat_map(|(at, clause)| {
            let rest = &expr[at + clause.len()..];
            rest[..rest.find(')').expect("a closing parenthesis")]
                .split(',')
                .map(|label| label.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The labels a legend names (`{{node}} {{interface}}`).
fn legend_labels(legend: &str) -> Vec<String> {
    legend
        .split("{{")
        .skip(1)
        .map(|rest| rest.split("}}").next().unwrap().trim().to_owned())
        .collect()
}

#[test]
#[ignore = "needs root"]
fn prometheus_with_the_configuration_alerts_and_answers_the_dashboard() {
    const FRAMES: u64 = 50;
    let link = Link::new("fleetmon");
    // Replies are counted (so their series exist), samples taken (so theirs do), classes
    // labelled (for the ARP panel).
    let probe = ProbeProcess::start(
        PROBE,
        &link.receiver,
        &[
            "--iface",
            RECEIVER_IF,
            "--egress",
            "--metrics",
            METRICS_ADDRESS,
            "--metrics-detail",
        ],
    );
    probe.wait_ready();

    // The shipped configuration and rules, scraping and evaluating every second instead of
    // every 30, with the hosts job's target file naming the probe, without a node label.
    let dir = TempDir::new("fleetmon");
    let config = fs::read_to_string(deploy("prometheus/prometheus.yml")).unwrap();
    let fast = config
        .replace("scrape_interval: 30s", "scrape_interval: 1s")
        .replace("evaluation_interval: 30s", "evaluation_interval: 1s");
    assert_eq!(fast.matches(": 1s").count(), 2, "{config}");
    fs::write(dir.path().join("prometheus.yml"), fast).unwrap();
    fs::copy(
        deploy("prometheus/localnet-probe.rules.yml"),
        dir.path().join("localnet-probe.rules.yml"),
    )
    .unwrap();
    fs::create_dir(dir.path().join("localnet-probe-hosts")).unwrap();
    fs::write(
        dir.path().join("localnet-probe-hosts/test.yml"),
        format!("- targets: ['{METRICS_ADDRESS}']\n"),
    )
    .unwrap();
    let prometheus = Prometheus::start(&link.receiver, &dir.path().join("prometheus.yml"));
    let node = METRICS_ADDRESS.split(':').next().unwrap();

    let wait_until = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(
                Instant::now() < deadline,
                "{what} within 60 s; prometheus log: {}",
                prometheus.log()
            );
            thread::sleep(Duration::from_millis(250));
        }
    };
    let results = |expr: &str| -> Vec<Value> {
        prometheus
            .query(expr)
            .and_then(|answer| answer["data"]["result"].as_array().cloned())
            .unwrap_or_default()
    };
    // Scraped once before route_localnet is turned on, so that turning it on is a change. The
    // quiet interface has no series of its own yet: the node's are there.
    wait_until("the probe scraped, its node named by its address", &|| {
        results(&format!(
            "localnet_probe_route_localnet_changes_total{{job=\"localnet-probe-hosts\",node=\"{node}\",scope=\"interface\"}} == 0"
        ))
        .len()
            == 1
    });
    link.receiver
        .sysctl(&format!("net/ipv4/conf/{RECEIVER_IF}/route_localnet"), "1");
    send_loopback_frames(&link, FRAMES);
    // Answered, now that route_localnet is on: replies from 127.0.0.1 leave.
    let sender = link.raw_sender();
    for _ in 0..FRAMES {
        sender.send(&arp_request(SENDER_V4, Ipv4Addr::LOCALHOST).build());
    }

    let expected: BTreeSet<&str> = [
        "LocalnetProbeLoopbackFrames",
        "LocalnetProbeLoopbackFramesPassed",
        "LocalnetProbeLoopbackArp",
        "LocalnetProbeLoopbackServiceAnswered",
        "LocalnetProbeExposed",
        "LocalnetProbeRouteLocalnetChanged",
    ]
    .into();
    let raised = || -> BTreeSet<String> {
        prometheus
            .api("alerts", "")
            .and_then(|answer| answer["data"]["alerts"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter(|alert| {
                alert["labels"]["node"] == node && alert["labels"]["interface"] == RECEIVER_IF
                    || alert["labels"]["interface"].is_null()
            })
            .map(|alert| alert["labels"]["alertname"].as_str().unwrap().to_owned())
            .collect()
    };
    wait_until("the alerts raised (pending or firing)", &|| {
        expected.iter().all(|alert| raised().contains(*alert))
    });
    let raised = raised();
    let unexpected: Vec<&String> = raised
        .iter()
        .filter(|alert| !expected.contains(alert.as_str()))
        .collect();
    assert!(unexpected.is_empty(), "raised as well: {unexpected:?}");

    let rules = prometheus.api("rules", "").expect("the rules");
    let mut evaluated = BTreeSet::new();
    for group in rules["data"]["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            assert_eq!(rule["health"], "ok", "{rule}");
            evaluated.insert(rule["name"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(evaluated, alert_names());

    let page = http_get(&link.receiver, METRICS_ADDRESS, "/metrics", None).body;
    let dashboard = Dashboard::read();
    for (place, expr, labels) in dashboard.queries() {
        for metric in expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|word| word.starts_with("localnet_probe_"))
        {
            assert!(
                page.contains(&format!("\n{metric}{{")),
                "{place}: no {metric} served"
            );
        }
        // The interface's series began with its first frame: a rate needs a second scrape.
        wait_until(&format!("{place}: series for {expr}"), &|| {
            !results(&expr).is_empty()
        });
        let series = results(&expr);
        // A label may be empty, so absent, in some series (xdp_mode at tcx), not in all.
        for label in &labels {
            assert!(
                series.iter().any(|one| one["metric"][label].is_string()),
                "{place}: no series has {label}: {series:?} ({expr})"
            );
        }
    }
    let (status, _) = probe.stop(libc::SIGTERM);
    assert!(status.success(), "exit status {status}");
}
