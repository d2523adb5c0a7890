//! nftables rules that drop frames with IPv4 loopback addresses before they reach a socket,
//! read from `nft -j list ruleset`. Only what is parsed fully counts: a rule with any match or
//! statement not understood here is not taken for a drop, and a rule that follows, in its chain,
//! one that may accept or jump is not either (the frame may leave the chain before it).
//!
//! What nft 1.0.6 (Debian 12) writes, checked against spoofed frames: a table with one flag has
//! `"flags"` as a string read from freed memory (`table_flags_json`'s use after free, fixed
//! upstream), so `"flags": "g"` or even `"flags": "persist"` may stand for `dormant`; a netdev
//! ingress chain has no `"dev"`.

use std::{
    collections::{BTreeMap, BTreeSet},
    process::Command,
};

use serde::Serialize;
use serde_json::Value;

/// Where a base chain sits, for the hooks that see frames from a link before local delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Hook {
    /// netdev (or inet) ingress of one device.
    Ingress,
    Prerouting,
    Input,
}

/// Which frames a drop rule takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dropped {
    /// `ip daddr 127.0.0.0/8`.
    Destinations,
    /// `ip daddr 127.0.0.0/8 ip saddr != 127.0.0.0/8` (kubelet's rule): not those whose source
    /// is loopback too.
    DestinationsFromOtherSources,
    /// `ip saddr 127.0.0.0/8`.
    Sources,
}

/// A rule that drops frames with IPv4 loopback addresses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NftDrop {
    pub family: String,
    pub table: String,
    pub chain: String,
    pub handle: u64,
    pub hook: Hook,
    /// The device it applies to (`iifname`/`iif`, or an ingress chain's device); `None`: all.
    pub interface: Option<String>,
    pub dropped: Dropped,
}

impl NftDrop {
    /// `inet localnet_guard prerouting (handle 2)`.
    pub fn label(&self) -> String {
        format!(
            "nft {} {} {} handle {}",
            self.family, self.table, self.chain, self.handle
        )
    }
}

/// Runs `nft -j list ruleset` and reads its drops; the error says why it could not.
pub fn read_ruleset() -> Result<Vec<NftDrop>, String> {
    let output = Command::new("nft")
        .args(["-j", "list", "ruleset"])
        .output()
        .map_err(|error| format!("cannot run nft: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "`nft -j list ruleset` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    parse(&String::from_utf8_lossy(&output.stdout))
}

/// A base chain, as far as it matters here.
struct Chain {
    hook: Hook,
    /// An ingress chain's device, when nft says.
    device: Option<String>,
    /// Whether every frame it sees has a conntrack entry already (input, or prerouting after
    /// conntrack's priority -200); before it, and at ingress, `ct status` matches nothing.
    conntracked: bool,
}

/// Conntrack's own prerouting priority (`NF_IP_PRI_CONNTRACK`).
const CONNTRACK_PRIORITY: i64 = -200;

/// Table flags that leave its chains in force.
const HARMLESS_TABLE_FLAGS: [&str; 2] = ["owner", "persist"];

/// Whether a table's chains are in force: it has no flags, or a list of only `owner` and
/// `persist`. A single flag written as a string is not believed (see the module's note), nor
/// anything else there (`null` too: nft leaves the key out when a table has no flags).
fn in_force(table: &Value) -> bool {
    match table.get("flags") {
        None => true,
        Some(Value::Array(flags)) => flags.iter().all(|flag| {
            flag.as_str()
                .is_some_and(|flag| HARMLESS_TABLE_FLAGS.contains(&flag))
        }),
        Some(_) => false,
    }
}

/// The drops in a ruleset as `nft -j list ruleset` writes it.
pub fn parse(json: &str) -> Result<Vec<NftDrop>, String> {
    let ruleset: Value =
        serde_json::from_str(json).map_err(|error| format!("nft's JSON: {error}"))?;
    let objects = ruleset["nftables"]
        .as_array()
        .ok_or("nft's JSON has no \"nftables\" array")?;
    let key = |object: &Value, name: &str| {
        (
            object["family"].as_str().unwrap_or_default().to_owned(),
            object["table"].as_str().unwrap_or_default().to_owned(),
            object[name].as_str().unwrap_or_default().to_owned(),
        )
    };
    // Tables in force, by family and name; a chain of any other is not read.
    let mut tables = BTreeSet::new();
    let mut chains = BTreeMap::new();
    // Whether a rule seen in the chain may end its evaluation without a drop.
    let mut left_early: BTreeMap<(String, String, String), bool> = BTreeMap::new();
    let mut drops = Vec::new();
    let table_of = |object: &Value, name: &str| {
        (
            object["family"].as_str().unwrap_or_default().to_owned(),
            object[name].as_str().unwrap_or_default().to_owned(),
        )
    };
    for object in objects {
        if let Some(table) = object.get("table") {
            if in_force(table) {
                tables.insert(table_of(table, "name"));
            }
        } else if let Some(chain) = object.get("chain") {
            if !tables.contains(&table_of(chain, "table")) {
                continue;
            }
            if let Some(hook) = hook_of(chain) {
                let device = match &chain["dev"] {
                    Value::String(device) => Some(device.clone()),
                    Value::Array(devices) if devices.len() == 1 => {
                        devices[0].as_str().map(str::to_owned)
                    }
                    _ => None,
                };
                let conntracked = match hook {
                    Hook::Input => true,
                    Hook::Prerouting => chain["prio"]
                        .as_i64()
                        .is_some_and(|priority| priority > CONNTRACK_PRIORITY),
                    Hook::Ingress => false,
                };
                chains.insert(
                    key(chain, "name"),
                    Chain {
                        hook,
                        device,
                        conntracked,
                    },
                );
            }
        } else if let Some(rule) = object.get("rule") {
            let chain_key = key(rule, "chain");
            let Some(chain) = chains.get(&chain_key) else {
                continue;
            };
            let left = left_early.entry(chain_key.clone()).or_default();
            if !*left && let Some((interface, dropped)) = drop_of(rule, chain.conntracked) {
                let interface = interface.or_else(|| chain.device.clone());
                // An ingress chain whose device nft does not name could be on any device.
                if chain.hook != Hook::Ingress || interface.is_some() {
                    drops.push(NftDrop {
                        family: chain_key.0,
                        table: chain_key.1,
                        chain: chain_key.2,
                        handle: rule["handle"].as_u64().unwrap_or_default(),
                        hook: chain.hook,
                        interface,
                        dropped,
                    });
                }
                continue;
            }
            *left |= may_leave(&rule["expr"]);
        }
    }
    Ok(drops)
}

/// The hook of a filter base chain that frames from a link meet before local delivery.
fn hook_of(chain: &Value) -> Option<Hook> {
    if chain["type"] != "filter" {
        return None;
    }
    let family = chain["family"].as_str()?;
    match (family, chain["hook"].as_str()?) {
        ("netdev" | "inet", "ingress") => Some(Hook::Ingress),
        ("ip" | "inet", "prerouting") => Some(Hook::Prerouting),
        ("ip" | "inet", "input") => Some(Hook::Input),
        _ => None,
    }
}

/// Whether a rule's statements include one that may end the chain's evaluation for a frame
/// without dropping it, or that this module does not know.
fn may_leave(expressions: &Value) -> bool {
    let Some(expressions) = expressions.as_array() else {
        return true;
    };
    expressions.iter().any(|expression| {
        let Some(object) = expression.as_object() else {
            return true;
        };
        object.keys().any(|statement| {
            !matches!(
                statement.as_str(),
                "match" | "counter" | "log" | "limit" | "drop" | "mangle" | "meta"
            )
        })
    })
}

/// Whether `right` is one or more of `allowed`: a value, an anonymous set or flags joined with
/// `|` (`ct state != established,related`).
fn only_of(right: &Value, allowed: &[&str]) -> bool {
    let values = match right {
        Value::String(_) => std::slice::from_ref(right),
        Value::Object(object) => match (object.get("set"), object.get("|"), object.len()) {
            (Some(Value::Array(values)), None, 1) | (None, Some(Value::Array(values)), 1) => {
                values.as_slice()
            }
            _ => return false,
        },
        _ => return false,
    };
    !values.is_empty()
        && values
            .iter()
            .all(|value| value.as_str().is_some_and(|value| allowed.contains(&value)))
}

/// The interface a rule names and which frames it drops, when it is a drop of IPv4 loopback
/// addresses made only of matches understood here. `conntracked`: whether its chain sees
/// frames after conntrack (where `ct status` can match).
fn drop_of(rule: &Value, conntracked: bool) -> Option<(Option<String>, Dropped)> {
    let expressions = rule["expr"].as_array()?;
    let mut interface = None;
    let (mut destination, mut source, mut not_from_loopback, mut drops) =
        (false, false, false, false);
    for expression in expressions {
        if expression.get("drop").is_some() {
            drops = true;
        } else if expression.get("counter").is_some() || expression.get("log").is_some() {
        } else if let Some(matched) = expression.get("match") {
            let (op, left, right) = (&matched["op"], &matched["left"], &matched["right"]);
            let loopback_net =
                right["prefix"]["addr"] == "127.0.0.0" && right["prefix"]["len"] == 8;
            let field = |name: &str| {
                left["payload"]["protocol"] == "ip" && left["payload"]["field"] == name
            };
            let meta = left["meta"]["key"].as_str();
            let ct = left["ct"]["key"].as_str();
            match (op.as_str()?, loopback_net) {
                ("==", true) if field("daddr") => destination = true,
                ("==", true) if field("saddr") => source = true,
                ("!=", true) if field("saddr") => not_from_loopback = true,
                ("==", _) if matches!(meta, Some("iifname" | "iif")) => {
                    interface = Some(right.as_str()?.to_owned());
                }
                // Every device but loopback (Docker's rules, and any that keeps the host's own
                // traffic to 127.0.0.1): all the links there are.
                ("!=", _) if meta == Some("iifname") && right == "lo" => {}
                // kubelet's exceptions, and only they: not frames of connections already
                // tracked or NATed to loopback, which a spoofed frame is not (it starts none).
                // Any other state or status (`!= new`, `!= confirmed`) lets spoofed frames
                // through. Without a conntrack entry (before conntrack, at ingress) `ct state`
                // is `invalid`, which still matches, but `ct status` matches nothing.
                ("!=", _) if ct == Some("state") && only_of(right, &["established", "related"]) => {
                }
                ("!=", _) if ct == Some("status") && conntracked && only_of(right, &["dnat"]) => {}
                _ => return None,
            }
        } else {
            return None;
        }
    }
    let dropped = match (destination, source, not_from_loopback) {
        (true, false, false) => Dropped::Destinations,
        (true, false, true) => Dropped::DestinationsFromOtherSources,
        (false, true, false) => Dropped::Sources,
        _ => return None,
    };
    drops.then_some((interface, dropped))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ruleset(chains: &str, rules: &str) -> String {
        format!(
            r#"{{"nftables": [{{"metainfo": {{"json_schema_version": 1}}}},
            {{"table": {{"family": "inet", "name": "g", "handle": 1}}}}, {chains}, {rules}]}}"#
        )
    }

    const PREROUTING: &str = r#"{"chain": {"family": "inet", "table": "g", "name": "pre",
        "handle": 1, "type": "filter", "hook": "prerouting", "prio": -300, "policy": "accept"}}"#;
    const IIFNAME_VRX: &str =
        r#"{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "vrx"}}"#;
    const DADDR: &str = r#"{"match": {"op": "==", "left": {"payload": {"protocol": "ip",
        "field": "daddr"}}, "right": {"prefix": {"addr": "127.0.0.0", "len": 8}}}}"#;

    fn rule(handle: u64, expressions: &[&str]) -> String {
        format!(
            r#"{{"rule": {{"family": "inet", "table": "g", "chain": "pre", "handle": {handle},
            "expr": [{}]}}}}"#,
            expressions.join(",")
        )
    }

    #[test]
    fn reads_a_prerouting_drop_of_loopback_destinations() {
        let json = ruleset(
            PREROUTING,
            &rule(2, &[IIFNAME_VRX, DADDR, r#"{"drop": null}"#]),
        );
        let drops = parse(&json).unwrap();
        assert_eq!(
            drops,
            [NftDrop {
                family: "inet".to_owned(),
                table: "g".to_owned(),
                chain: "pre".to_owned(),
                handle: 2,
                hook: Hook::Prerouting,
                interface: Some("vrx".to_owned()),
                dropped: Dropped::Destinations,
            }]
        );
    }

    #[test]
    fn a_rule_sparing_lo_drops_on_every_link() {
        let not_lo =
            r#"{"match": {"op": "!=", "left": {"meta": {"key": "iifname"}}, "right": "lo"}}"#;
        let drops = parse(&ruleset(PREROUTING, &rule(2, &[not_lo, DADDR, DROP]))).unwrap();
        assert_eq!(drops.len(), 1);
        assert_eq!(drops[0].interface, None);
        assert_eq!(drops[0].dropped, Dropped::Destinations);
        // Sparing any other device spares a link.
        let not_vrx = not_lo.replace(r#""lo""#, r#""vrx""#);
        assert!(!counted(PREROUTING, &[&not_vrx, DADDR, DROP]));
    }

    #[test]
    fn reads_kubelets_rule_for_what_it_is() {
        let kubelet = [
            r#"{"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                "right": {"prefix": {"addr": "127.0.0.0", "len": 8}}}}"#,
            DADDR,
            r#"{"match": {"op": "!=", "left": {"ct": {"key": "state"}},
                "right": {"set": ["established", "related"]}}}"#,
            r#"{"match": {"op": "!=", "left": {"ct": {"key": "status"}}, "right": "dnat"}}"#,
            r#"{"counter": {"packets": 0, "bytes": 0}}"#,
            r#"{"drop": null}"#,
        ];
        let input = PREROUTING.replace("prerouting", "input");
        let drops = parse(&ruleset(&input, &rule(3, &kubelet))).unwrap();
        assert_eq!(drops.len(), 1);
        assert_eq!(drops[0].hook, Hook::Input);
        assert_eq!(drops[0].interface, None);
        assert_eq!(drops[0].dropped, Dropped::DestinationsFromOtherSources);
    }

    #[test]
    fn counts_only_what_it_understands() {
        let drop = r#"{"drop": null}"#;
        // Not a drop, another address, a match not understood.
        for expressions in [
            vec![DADDR, r#"{"accept": null}"#],
            vec![&DADDR.replace("127.0.0.0", "10.0.0.0"), drop],
            vec![
                r#"{"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "udp"}}"#,
                DADDR,
                drop,
            ],
        ] {
            assert!(
                parse(&ruleset(PREROUTING, &rule(2, &expressions)))
                    .unwrap()
                    .is_empty()
            );
        }
        // After an accept the frame may have left the chain.
        let rules = format!(
            "{}, {}",
            rule(2, &[IIFNAME_VRX, r#"{"accept": null}"#]),
            rule(3, &[DADDR, drop])
        );
        assert!(parse(&ruleset(PREROUTING, &rules)).unwrap().is_empty());
        // A chain of another type or hook.
        let output = PREROUTING.replace("prerouting", "output");
        assert!(
            parse(&ruleset(&output, &rule(2, &[DADDR, drop])))
                .unwrap()
                .is_empty()
        );
        // A dormant table.
        let json = ruleset(PREROUTING, &rule(2, &[DADDR, drop])).replace(
            r#""name": "g", "handle": 1}"#,
            r#""name": "g", "handle": 1, "flags": ["dormant"]}"#,
        );
        assert!(parse(&json).unwrap().is_empty());
        assert!(parse("not json").is_err());
    }

    const DROP: &str = r#"{"drop": null}"#;

    fn ct(key: &str, right: &str) -> String {
        format!(
            r#"{{"match": {{"op": "!=", "left": {{"ct": {{"key": "{key}"}}}}, "right": {right}}}}}"#
        )
    }

    fn counted(chain: &str, expressions: &[&str]) -> bool {
        !parse(&ruleset(chain, &rule(2, expressions)))
            .unwrap()
            .is_empty()
    }

    #[test]
    fn a_table_counts_only_when_its_flags_leave_it_in_force() {
        let with_flags = |flags: &str| {
            ruleset(PREROUTING, &rule(2, &[DADDR, DROP])).replace(
                r#""name": "g", "handle": 1}"#,
                &format!(r#""name": "g", "handle": 1, "flags": {flags}}}"#),
            )
        };
        for flags in ["[]", r#"["owner"]"#, r#"["owner", "persist"]"#] {
            assert_eq!(parse(&with_flags(flags)).unwrap().len(), 1, "{flags}");
        }
        // Dormant, a flag not known, and any single flag written as a string: nft 1.0.6 writes
        // it from freed memory, so even "persist" may stand for dormant.
        for flags in [
            r#"["dormant"]"#,
            r#"["owner", "dormant"]"#,
            r#"["persist", "someday"]"#,
            r#""dormant""#,
            r#""g""#,
            r#""owner""#,
            r#""persist""#,
            "1",
            "null",
            r#"{"dormant": true}"#,
        ] {
            assert!(parse(&with_flags(flags)).unwrap().is_empty(), "{flags}");
        }
        // A chain whose table nft did not list.
        let json = ruleset(PREROUTING, &rule(2, &[DADDR, DROP]))
            .replace(r#""name": "g", "handle": 1"#, r#""name": "h", "handle": 1"#);
        assert!(parse(&json).unwrap().is_empty());
        // What nft 1.0.6 wrote here for `table ip g { flags dormant; chain p { type filter hook
        // prerouting priority 0; ip daddr 127.0.0.0/8 drop } }`: spoofed frames are delivered.
        let dormant = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name":
            "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "ip", "name": "g",
            "handle": 1, "flags": "g"}}, {"chain": {"family": "ip", "table": "g", "name": "p",
            "handle": 1, "type": "filter", "hook": "prerouting", "prio": 0, "policy": "accept"}},
            {"rule": {"family": "ip", "table": "g", "chain": "p", "handle": 2, "expr": [{"match":
            {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right":
            {"prefix": {"addr": "127.0.0.0", "len": 8}}}}, {"drop": null}]}}]}"#;
        assert!(parse(dormant).unwrap().is_empty());
        assert_eq!(
            parse(&dormant.replace(r#", "flags": "g""#, ""))
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn counts_kubelets_ct_exceptions_and_no_other() {
        let input = PREROUTING.replace("prerouting", "input");
        let (established, related) = (r#""established""#, r#""related""#);
        for right in [
            established,
            related,
            r#"{"set": ["established", "related"]}"#,
            r#"{"set": ["related"]}"#,
            r#"{"|": ["established", "related"]}"#,
        ] {
            let state = ct("state", right);
            assert!(counted(&input, &[DADDR, &state, DROP]), "{state}");
            assert!(counted(PREROUTING, &[DADDR, &state, DROP]), "{state}");
        }
        // Spoofed frames are new (or invalid): these let them through.
        for right in [
            r#""new""#,
            r#""invalid""#,
            r#""untracked""#,
            r#"{"set": ["new"]}"#,
            r#"{"set": ["established", "new"]}"#,
            r#"{"|": ["related", "invalid"]}"#,
            r#"{"set": []}"#,
            r#"["established"]"#,
            r#"{"set": ["established"], "extra": 1}"#,
            "1",
        ] {
            let state = ct("state", right);
            assert!(!counted(&input, &[DADDR, &state, DROP]), "{state}");
        }
        let dnat = ct("status", r#""dnat""#);
        assert!(counted(&input, &[DADDR, &dnat, DROP]));
        for right in [r#"{"set": ["dnat"]}"#, r#"{"|": ["dnat"]}"#] {
            assert!(counted(&input, &[DADDR, &ct("status", right), DROP]));
        }
        for right in [
            r#""confirmed""#,
            r#""snat""#,
            r#"{"|": ["snat", "dnat"]}"#,
            r#"{"set": ["dnat", "seen-reply"]}"#,
        ] {
            let status = ct("status", right);
            assert!(!counted(&input, &[DADDR, &status, DROP]), "{status}");
        }
        // `ct status` matches nothing before conntrack (priority -200) has seen the frame.
        let at = |priority: &str| PREROUTING.replace("-300", priority);
        assert!(counted(&at("0"), &[DADDR, &dnat, DROP]));
        assert!(counted(&at("-199"), &[DADDR, &dnat, DROP]));
        for priority in ["-300", "-200", r#""raw""#] {
            assert!(!counted(&at(priority), &[DADDR, &dnat, DROP]), "{priority}");
        }
        // Only "!=" is an exception.
        let equal = ct("state", established).replace("!=", "==");
        assert!(!counted(&input, &[DADDR, &equal, DROP]));
    }

    #[test]
    fn an_ingress_rule_counts_on_the_device_it_names() {
        let netdev = |chain_extra: &str, expressions: &[&str]| {
            parse(&format!(
                r#"{{"nftables": [{{"table": {{"family": "netdev", "name": "t", "handle": 3}}}},
                {{"chain": {{"family": "netdev", "table": "t", "name": "c", "handle": 1,
                "type": "filter", "hook": "ingress", "prio": 0, "policy": "accept"{chain_extra}}}}},
                {{"rule": {{"family": "netdev", "table": "t", "chain": "c", "handle": 2,
                "expr": [{}]}}}}]}}"#,
                expressions.join(",")
            ))
            .unwrap()
        };
        // nft 1.0.6 names no device: the rule could be on any, unless it matches one.
        assert!(netdev("", &[DADDR, DROP]).is_empty());
        let drops = netdev("", &[IIFNAME_VRX, DADDR, DROP]);
        assert_eq!(drops.len(), 1);
        assert_eq!(drops[0].hook, Hook::Ingress);
        assert_eq!(drops[0].interface.as_deref(), Some("vrx"));
        for dev in [r#", "dev": "vb""#, r#", "dev": ["vb"]"#] {
            let drops = netdev(dev, &[DADDR, DROP]);
            assert_eq!(drops.len(), 1, "{dev}");
            assert_eq!(drops[0].interface.as_deref(), Some("vb"));
        }
        assert!(netdev(r#", "dev": ["vb", "vc"]"#, &[DADDR, DROP]).is_empty());
        // Before conntrack: `ct state` is invalid there and still matches, `ct status` does not.
        let state = ct("state", r#"{"set": ["established", "related"]}"#);
        assert_eq!(netdev("", &[IIFNAME_VRX, DADDR, &state, DROP]).len(), 1);
        let status = ct("status", r#""dnat""#);
        assert!(netdev("", &[IIFNAME_VRX, DADDR, &status, DROP]).is_empty());
    }
}
