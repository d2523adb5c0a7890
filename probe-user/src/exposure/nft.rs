//! The nftables ruleset as [`Ruleset`] chains, read from `nft -j list ruleset`; what its JSON
//! leaves out is read elsewhere: an ingress chain's device from `nft list ruleset`, the matches
//! of a rule iptables-nft wrote that nft shows as an opaque `xt` (kubelet's `-m conntrack !
//! --ctstate RELATED,ESTABLISHED,DNAT`) from `iptables-nft-save`, and the tables of
//! iptables-legacy from `iptables-legacy-save` (see [`super::iptables`]).
//!
//! What nft 1.0.6 (Debian 12) writes, checked against spoofed frames: a table with one flag has
//! `"flags"` as a string read from freed memory (`table_flags_json`'s use after free, fixed
//! upstream), so `"flags": "g"` or even `"flags": "persist"` may stand for `dormant`; a netdev
//! ingress chain has no `"dev"`.

use std::{collections::BTreeMap, net::Ipv4Addr, process::Command};

use serde_json::Value;

use crate::net::names::name_of_bytes;

pub use super::ruleset::Hook;
use super::{
    installers::{self, Installer},
    iptables,
    ruleset::{
        Action, Base, CONNTRACK_PRIORITY, Chain, Condition, NameMatch, Net, Rule, Ruleset,
        chain_key,
    },
    sockets::Protocol,
};

/// Runs `nft -j list ruleset` (and what fills its gaps) and reads its chains; the error says
/// why it could not.
pub fn read_ruleset() -> Result<Ruleset, String> {
    let json = run(&["-j", "list", "ruleset"])?;
    let mut ruleset = parse(&json)?;
    if ruleset.chains.values().any(|chain| {
        chain
            .base
            .as_ref()
            .is_some_and(|base| base.devices.is_none())
    }) {
        match run(&["list", "ruleset"]) {
            Ok(text) => set_ingress_devices(&mut ruleset, &text),
            Err(why) => ruleset
                .unread
                .push(format!("ingress chains' devices: {why}")),
        }
    }
    if has_opaque_matches(&json) {
        match iptables::save("iptables-nft-save") {
            Ok(saved) => iptables::fill_opaque(&mut ruleset, &saved),
            Err(why) => ruleset.unread.push(format!(
                "rules iptables-nft wrote with matches nft cannot show: {why}"
            )),
        }
    }
    iptables::read_legacy(&mut ruleset);
    Ok(ruleset)
}

fn run(args: &[&str]) -> Result<String, String> {
    let output = Command::new("nft")
        .args(args)
        .output()
        .map_err(|error| format!("cannot run nft: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "`nft {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn has_opaque_matches(json: &str) -> bool {
    json.contains("\"xt\"")
}

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

/// The chains of a ruleset as `nft -j list ruleset` writes it: the base chains that frames from
/// a link meet before local delivery, and every regular chain (one may be jumped to).
pub fn parse(json: &str) -> Result<Ruleset, String> {
    let ruleset: Value =
        serde_json::from_str(json).map_err(|error| format!("nft's JSON: {error}"))?;
    let objects = ruleset["nftables"]
        .as_array()
        .ok_or("nft's JSON has no \"nftables\" array")?;
    let text = |object: &Value, name: &str| object[name].as_str().unwrap_or_default().to_owned();
    let mut tables = Vec::new();
    let mut parsed = Ruleset::default();
    for object in objects {
        if let Some(table) = object.get("table") {
            let (family, name) = (text(table, "family"), text(table, "name"));
            installers::note(
                &mut parsed.installers,
                Installer::of_table(&family, &name),
                || format!("nft table {family} {name}"),
            );
            if in_force(table) {
                tables.push((text(table, "family"), text(table, "name")));
            }
        } else if let Some(chain) = object.get("chain") {
            let (family, table) = (text(chain, "family"), text(chain, "table"));
            let name = text(chain, "name");
            installers::note(&mut parsed.installers, Installer::of_chain(&name), || {
                chain_key(&family, &table, &name)
            });
            if !tables.contains(&(family.clone(), table.clone())) {
                continue;
            }
            let base = if chain.get("hook").is_some() {
                let Some(hook) = hook_of(chain) else { continue };
                Some(Base {
                    hook,
                    devices: match &chain["dev"] {
                        Value::String(device) => Some(vec![device.clone()]),
                        Value::Array(devices) => Some(
                            devices
                                .iter()
                                .filter_map(|device| device.as_str().map(str::to_owned))
                                .collect(),
                        ),
                        _ if hook == Hook::Ingress => None,
                        _ => Some(Vec::new()),
                    },
                    conntracked: match hook {
                        Hook::Input => true,
                        Hook::Prerouting => chain["prio"]
                            .as_i64()
                            .is_some_and(|priority| priority > CONNTRACK_PRIORITY),
                        Hook::Ingress => false,
                    },
                    policy_drop: chain["policy"] == "drop",
                })
            } else {
                None
            };
            parsed.chains.insert(
                chain_key(&family, &table, &name),
                Chain {
                    label: format!("nft {family} {table} {name}"),
                    base,
                    rules: Vec::new(),
                },
            );
        } else if let Some(rule) = object.get("rule") {
            let (family, table) = (text(rule, "family"), text(rule, "table"));
            let key = chain_key(&family, &table, &text(rule, "chain"));
            let Some(chain) = parsed.chains.get_mut(&key) else {
                continue;
            };
            let comment = rule["comment"]
                .as_str()
                .map(|comment| format!(" ({comment:?})"))
                .unwrap_or_default();
            let label = format!(
                "{} handle {}{comment}",
                chain.label,
                rule["handle"].as_u64().unwrap_or_default()
            );
            let (conditions, action) =
                rule_of(&rule["expr"], &|target| chain_key(&family, &table, target));
            chain.rules.push(Rule {
                label,
                conditions,
                action,
            });
        }
    }
    Ok(parsed)
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

/// The values of `right`: one, an anonymous set or flags joined with `|`
/// (`ct state != established,related`); `None` when it is anything else or empty.
fn values(right: &Value) -> Option<Vec<String>> {
    let values = match right {
        Value::String(_) => std::slice::from_ref(right),
        Value::Object(object) => match (object.get("set"), object.get("|"), object.len()) {
            (Some(Value::Array(values)), None, 1) | (None, Some(Value::Array(values)), 1) => {
                values.as_slice()
            }
            _ => return None,
        },
        _ => return None,
    };
    let values: Option<Vec<String>> = values
        .iter()
        .map(|value| value.as_str().map(str::to_owned))
        .collect();
    values.filter(|values| !values.is_empty())
}

fn net_of(right: &Value) -> Option<Net> {
    if let Some(address) = right.as_str() {
        return Some(Net {
            address: address.parse().ok()?,
            len: 32,
        });
    }
    let prefix = &right["prefix"];
    let len = u8::try_from(prefix["len"].as_u64()?).ok()?;
    (len <= 32).then_some(())?;
    Some(Net {
        address: prefix["addr"].as_str()?.parse::<Ipv4Addr>().ok()?,
        len,
    })
}

fn protocol_of(right: &Value) -> Option<Protocol> {
    match right {
        Value::String(name) if name == "tcp" => Some(Protocol::Tcp),
        Value::String(name) if name == "udp" => Some(Protocol::Udp),
        Value::Number(number) if number.as_u64() == Some(6) => Some(Protocol::Tcp),
        Value::Number(number) if number.as_u64() == Some(17) => Some(Protocol::Udp),
        _ => None,
    }
}

/// An interface name nft matches, as interfaces' names are held ([`name_of_bytes`]): `"veth*"`
/// is a wildcard, `"t\\*"` the name `t*`. `None` for a name with U+FFFD, which may stand for
/// bytes lost to the lossy reading of nft's output.
pub fn name_match(name: &str) -> Option<NameMatch> {
    if name.contains(char::REPLACEMENT_CHARACTER) {
        return None;
    }
    let held = |name: &str| name_of_bytes(name.as_bytes());
    Some(match name.strip_suffix('*') {
        Some(prefix) => match prefix.strip_suffix('\\') {
            Some(before) => NameMatch::Exactly(held(before) + "*"),
            None => NameMatch::Prefix(held(prefix)),
        },
        None => NameMatch::Exactly(held(name)),
    })
}

/// One `match` expression.
fn condition_of(matched: &Value) -> Condition {
    let unknown = || Condition::Unknown(matched.to_string());
    let (op, left, right) = (&matched["op"], &matched["left"], &matched["right"]);
    let ct = left["ct"]["key"].as_str();
    // `in` is nft's match of flags (`ct state established,related`, a string or a list): for
    // conntrack's state or status, any of them.
    let flags = op == "in" && matches!(ct, Some("state" | "status"));
    let negated = match op.as_str() {
        Some("==") => false,
        _ if flags => false,
        Some("!=") => true,
        _ => return unknown(),
    };
    let listed = |right: &Value| match right {
        Value::Array(flags_listed) if flags => values(&serde_json::json!({ "set": flags_listed })),
        right => values(right),
    };
    let payload = |protocol: &str, field: &str| {
        left["payload"]["protocol"] == protocol && left["payload"]["field"] == field
    };
    let meta = left["meta"]["key"].as_str();
    // A match of another family's header carries nft's implicit dependency on that family: it
    // never holds for an IPv4 frame, whatever it compares.
    let other_family = ["ip6", "icmpv6", "arp"]
        .iter()
        .any(|protocol| left["payload"]["protocol"] == *protocol);
    let condition = if other_family {
        Some(Condition::Never)
    } else if payload("ip", "saddr") || payload("ip", "daddr") {
        net_of(right).map(|net| {
            if payload("ip", "saddr") {
                Condition::Source { net, negated }
            } else {
                Condition::Destination { net, negated }
            }
        })
    } else if matches!(meta, Some("iifname" | "iif")) {
        values(right).and_then(|names| {
            Some(Condition::Interface {
                names: names
                    .iter()
                    .map(|name| name_match(name))
                    .collect::<Option<_>>()?,
                negated,
            })
        })
    } else if meta == Some("l4proto") || payload("ip", "protocol") {
        protocol_of(right).map(|protocol| Condition::Protocol { protocol, negated })
    } else if matches!(meta, Some("nfproto" | "protocol")) {
        // `meta nfproto` names a family, `meta protocol` an EtherType; IPv4 is "ipv4" or "ip".
        right.as_str().map(|family| {
            let ipv4 = matches!(family, "ipv4" | "ip");
            if ipv4 != negated {
                Condition::Always
            } else {
                Condition::Never
            }
        })
    } else if let Some(protocol) = ["tcp", "udp", "th"]
        .into_iter()
        .find(|protocol| payload(protocol, "dport"))
    {
        let port = right.as_u64().and_then(|port| u16::try_from(port).ok());
        port.filter(|_| !negated).map(|port| Condition::Port {
            protocol: match protocol {
                "tcp" => Some(Protocol::Tcp),
                "udp" => Some(Protocol::Udp),
                _ => None,
            },
            port,
        })
    } else if ct == Some("state") {
        listed(right).map(|states| Condition::CtState { states, negated })
    } else if ct == Some("status") {
        listed(right).map(|statuses| Condition::CtStatus { statuses, negated })
    } else {
        None
    };
    condition.unwrap_or_else(unknown)
}

/// A rule's matches and what it does; `target` makes a jump's chain key.
fn rule_of(expressions: &Value, target: &dyn Fn(&str) -> String) -> (Vec<Condition>, Action) {
    let Some(expressions) = expressions.as_array() else {
        return (Vec::new(), Action::Unknown);
    };
    let mut conditions = Vec::new();
    let mut action = Action::Continue;
    let mut unknown_statement = false;
    for expression in expressions {
        let Some((statement, value)) = expression
            .as_object()
            .filter(|object| object.len() == 1)
            .and_then(|object| object.iter().next())
        else {
            unknown_statement = true;
            continue;
        };
        match statement.as_str() {
            "match" => conditions.push(condition_of(value)),
            "xt" if value["type"] == "match" && value["name"] == "comment" => {}
            // Its meaning is only in the kernel: iptables-nft-save shows it.
            "xt" if value["type"] == "match" => {
                conditions.push(Condition::Unknown(format!("xt {}", value["name"])));
            }
            "counter" | "log" | "mangle" => {}
            // A rate limit lets the sender through above it.
            "limit" => conditions.push(Condition::Unknown("limit".to_owned())),
            "drop" | "reject" => action = Action::Drop,
            "accept" => action = Action::Accept,
            "return" => action = Action::Return,
            "continue" => action = Action::Continue,
            "jump" | "goto" => match value["target"].as_str() {
                Some(name) if statement == "jump" => action = Action::Jump(target(name)),
                Some(name) => action = Action::Goto(target(name)),
                None => unknown_statement = true,
            },
            _ => unknown_statement = true,
        }
    }
    if unknown_statement {
        action = Action::Unknown;
    }
    (conditions, action)
}

/// Fills in the devices of the ingress chains the JSON left without, from `nft list ruleset`'s
/// text (`type filter hook ingress device "eth0" priority …` or `devices = { "a", "b" }`).
pub fn set_ingress_devices(ruleset: &mut Ruleset, text: &str) {
    let mut table = None;
    let mut chain = None;
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["table", family, name, "{"] => table = Some((family.to_string(), unquote(name))),
            ["chain", name, "{"] => chain = Some(unquote(name)),
            _ if line.contains("hook ingress") => {
                let (Some((family, table)), Some(chain)) = (&table, &chain) else {
                    continue;
                };
                let after = line
                    .split_once(" device ")
                    .or_else(|| line.split_once(" devices = "))
                    .map(|(_, after)| after.split(" priority").next().unwrap_or_default());
                let devices: Vec<String> = after
                    .unwrap_or_default()
                    .split('"')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_owned)
                    .collect();
                found.insert(chain_key(family, table, chain), devices);
            }
            _ => {}
        }
    }
    for (key, chain) in &mut ruleset.chains {
        if let Some(base) = &mut chain.base
            && base.devices.is_none()
            && let Some(devices) = found.get(key)
        {
            base.devices = Some(devices.clone());
        }
    }
}

fn unquote(name: &str) -> String {
    name.trim_matches('"').to_owned()
}

#[cfg(test)]
mod tests;
