//! iptables' rules as [`Ruleset`] chains, read from `iptables-save`'s format: those of
//! iptables-legacy, which nft does not see, and the matches of rules iptables-nft wrote that
//! nft shows only as an opaque `xt` (kubelet's conntrack match).

use std::{fs, process::Command};

use crate::net::names::name_of_bytes;

use super::{
    installers::{self, Installer},
    ruleset::{Action, Base, Chain, Condition, Hook, NameMatch, Net, Rule, Ruleset, chain_key},
    sockets::Protocol,
};

/// Runs `program` (`iptables-nft-save`, `iptables-legacy-save`) for the IPv4 tables.
pub fn save(program: &str) -> Result<String, String> {
    if !super::inputs::which(program) {
        return Err(format!("{program} is not installed"));
    }
    let output = Command::new(program)
        .output()
        .map_err(|error| format!("cannot run {program}: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "{program} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The chains of an `iptables-save` output: per table, its chains with their policies (`-` for
/// a regular chain) and their rules' words, in order.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Saved {
    pub tables: Vec<SavedTable>,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct SavedTable {
    pub name: String,
    /// Name and policy.
    pub chains: Vec<(String, String)>,
    /// The chain and the words after `-A CHAIN`.
    pub rules: Vec<(String, Vec<String>)>,
}

pub fn parse_save(text: &str) -> Saved {
    let mut saved = Saved::default();
    for line in text.lines().map(str::trim) {
        if let Some(table) = line.strip_prefix('*') {
            saved.tables.push(SavedTable {
                name: table.to_owned(),
                ..SavedTable::default()
            });
        } else if let Some(table) = saved.tables.last_mut() {
            if let Some(chain) = line.strip_prefix(':') {
                let mut words = chain.split_whitespace();
                if let (Some(name), Some(policy)) = (words.next(), words.next()) {
                    table.chains.push((name.to_owned(), policy.to_owned()));
                }
            } else if line.starts_with("-A ") {
                let words = split_words(line);
                if let [_, chain, rest @ ..] = words.as_slice() {
                    table.rules.push((chain.clone(), rest.to_vec()));
                }
            }
        }
    }
    saved
}

/// Words as iptables-save writes them: separated by spaces, a double-quoted one with `\"` and
/// `\\` inside.
fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c == ' ' {
            chars.next();
            continue;
        }
        let mut word = String::new();
        if c == '"' {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => word.extend(chars.next()),
                    '"' => break,
                    c => word.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        words.push(word);
    }
    words
}

fn net_of(word: &str) -> Option<Net> {
    let (address, len) = word.split_once('/').unwrap_or((word, "32"));
    let len: u8 = len.parse().ok().filter(|len| *len <= 32)?;
    Some(Net {
        address: address.parse().ok()?,
        len,
    })
}

fn protocol_of(word: &str) -> Option<Protocol> {
    match word {
        "tcp" | "6" => Some(Protocol::Tcp),
        "udp" | "17" => Some(Protocol::Udp),
        _ => None,
    }
}

/// A rule's matches, what it does and its comment, from the words after `-A CHAIN`; `target`
/// makes a jump's chain key.
pub fn rule_of(
    words: &[String],
    target: &dyn Fn(&str) -> String,
) -> (Vec<Condition>, Action, Option<String>) {
    let mut conditions = Vec::new();
    let mut action = Action::Continue;
    let mut comment = None;
    let mut protocol = None;
    let mut negated = false;
    let mut words = words.iter().peekable();
    while let Some(word) = words.next() {
        if word == "!" {
            negated = true;
            continue;
        }
        let mut argument = || words.next().cloned().unwrap_or_default();
        let unknown = |what: &str| Condition::Unknown(what.to_owned());
        match word.as_str() {
            "-s" | "--source" | "-d" | "--destination" => {
                let argument = argument();
                conditions.push(match net_of(&argument) {
                    Some(net) if word.starts_with("-s") || word == "--source" => {
                        Condition::Source { net, negated }
                    }
                    Some(net) => Condition::Destination { net, negated },
                    None => unknown(&argument),
                });
            }
            "-i" | "--in-interface" => {
                let name = argument();
                // U+FFFD may stand for bytes lost to the lossy reading of the output.
                if name.contains(char::REPLACEMENT_CHARACTER) {
                    conditions.push(unknown(&name));
                } else {
                    let held = |name: &str| name_of_bytes(name.as_bytes());
                    let names = vec![match name.strip_suffix('+') {
                        Some(prefix) => NameMatch::Prefix(held(prefix)),
                        None => NameMatch::Exactly(held(&name)),
                    }];
                    conditions.push(Condition::Interface { names, negated });
                }
            }
            "-p" | "--protocol" => {
                let argument = argument();
                protocol = protocol_of(&argument).filter(|_| !negated);
                conditions.push(match protocol_of(&argument) {
                    Some(protocol) => Condition::Protocol { protocol, negated },
                    None if matches!(argument.as_str(), "all" | "0") && !negated => {
                        Condition::Always
                    }
                    None => unknown(&argument),
                });
            }
            // Modules whose options follow.
            "-m" | "--match" => {
                argument();
            }
            "--dport" | "--destination-port" => {
                let argument = argument();
                conditions.push(match argument.parse() {
                    Ok(port) if !negated => Condition::Port { protocol, port },
                    _ => unknown(&argument),
                });
            }
            "--comment" => comment = Some(argument()),
            "--ctstate" | "--state" => {
                let states = argument()
                    .split(',')
                    .map(str::to_lowercase)
                    .collect::<Vec<_>>();
                conditions.push(Condition::CtState { states, negated });
            }
            "-j" | "--jump" | "-g" | "--goto" => {
                let name = argument();
                action = match name.as_str() {
                    "DROP" | "REJECT" => Action::Drop,
                    "ACCEPT" => Action::Accept,
                    "RETURN" => Action::Return,
                    "LOG" | "NFLOG" | "MARK" | "CONNMARK" => Action::Continue,
                    // Targets of iptables: what they do is not known here.
                    name if name.chars().all(|c| c.is_ascii_uppercase()) => Action::Unknown,
                    name if word.starts_with("-g") || word == "--goto" => {
                        Action::Goto(target(name))
                    }
                    name => Action::Jump(target(name)),
                };
                // A target's options.
                while words.peek().is_some_and(|next| next.starts_with("--")) {
                    words.next();
                    words.next_if(|next| !next.starts_with('-'));
                }
            }
            option => {
                // An option not understood, with its arguments.
                while words
                    .next_if(|next| !next.starts_with('-') && *next != "!")
                    .is_some()
                {}
                conditions.push(unknown(option));
            }
        }
        negated = false;
    }
    (conditions, action, comment)
}

/// Gives the rules of `ruleset` that nft shows with an opaque `xt` match the matches
/// iptables-nft-save shows: the rule at the same place of the same chain, when the chain has
/// as many rules in both.
pub fn fill_opaque(ruleset: &mut Ruleset, saved: &str) {
    for table in parse_save(saved).tables {
        for (chain_name, _) in &table.chains {
            let key = chain_key("ip", &table.name, chain_name);
            let Some(chain) = ruleset.chains.get_mut(&key) else {
                continue;
            };
            let lines: Vec<&Vec<String>> = table
                .rules
                .iter()
                .filter(|(chain, _)| chain == chain_name)
                .map(|(_, words)| words)
                .collect();
            if lines.len() != chain.rules.len() {
                continue;
            }
            for (rule, words) in chain.rules.iter_mut().zip(lines) {
                let opaque = rule
                    .conditions
                    .iter()
                    .any(|c| matches!(c, Condition::Unknown(what) if what.starts_with("xt ")));
                if !opaque {
                    continue;
                }
                let (conditions, action, comment) =
                    rule_of(words, &|target| chain_key("ip", &table.name, target));
                rule.conditions = conditions;
                rule.action = action;
                if let Some(comment) = comment
                    && !rule.label.contains('"')
                {
                    rule.label = format!("{} ({comment:?})", rule.label);
                }
            }
        }
    }
}

/// The base chains of iptables' tables that frames from a link meet before local delivery, and
/// whether conntrack has seen the frame there (raw runs before it).
fn base_of(table: &str, chain: &str, policy: &str) -> Option<Base> {
    let (hook, conntracked) = match (table, chain) {
        ("raw", "PREROUTING") => (Hook::Prerouting, false),
        ("mangle", "PREROUTING") => (Hook::Prerouting, true),
        ("mangle" | "filter" | "security", "INPUT") => (Hook::Input, true),
        _ => return None,
    };
    Some(Base {
        hook,
        devices: Some(Vec::new()),
        conntracked,
        policy_drop: policy == "DROP",
    })
}

/// Adds the chains of an `iptables-save` output of iptables-legacy to `ruleset`.
pub fn add_legacy(ruleset: &mut Ruleset, saved: &str) {
    for table in parse_save(saved).tables {
        for (name, _) in &table.chains {
            installers::note(&mut ruleset.installers, Installer::of_chain(name), || {
                format!("iptables-legacy -t {} {name}", table.name)
            });
        }
        // nat chains translate addresses; they drop nothing.
        if table.name == "nat" {
            continue;
        }
        let key = |chain: &str| format!("iptables-legacy {} {chain}", table.name);
        for (name, policy) in &table.chains {
            let rules = table
                .rules
                .iter()
                .filter(|(chain, _)| chain == name)
                .enumerate()
                .map(|(index, (_, words))| {
                    let (conditions, action, comment) = rule_of(words, &key);
                    let comment = comment
                        .map(|comment| format!(" ({comment:?})"))
                        .unwrap_or_default();
                    Rule {
                        label: format!(
                            "iptables-legacy -t {} {name} rule {}{comment}",
                            table.name,
                            index + 1
                        ),
                        conditions,
                        action,
                    }
                })
                .collect();
            ruleset.chains.insert(
                key(name),
                Chain {
                    label: format!("iptables-legacy -t {} {name}", table.name),
                    base: base_of(&table.name, name, policy),
                    rules,
                },
            );
        }
    }
}

/// The tables iptables-legacy has in this network namespace.
fn legacy_tables() -> Vec<String> {
    fs::read_to_string("/proc/net/ip_tables_names")
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Adds iptables-legacy's chains to `ruleset`, or says why they could not be read where it has
/// tables.
pub fn read_legacy(ruleset: &mut Ruleset) {
    let tables = legacy_tables();
    if tables.is_empty() {
        return;
    }
    match save("iptables-legacy-save") {
        Ok(saved) => add_legacy(ruleset, &saved),
        Err(why) => ruleset.unread.push(format!(
            "iptables-legacy's tables ({}) could not be read: {why}",
            tables.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBELET: &str = r#"-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP"#;

    #[test]
    fn reads_kubelets_rule() {
        let saved = parse_save(&format!(
            "*filter\n:INPUT ACCEPT [0:0]\n{KUBELET}\nCOMMIT\n"
        ));
        let (chain, words) = &saved.tables[0].rules[0];
        assert_eq!(chain, "KUBE-FIREWALL");
        let (conditions, action, comment) = rule_of(words, &str::to_owned);
        assert_eq!(action, Action::Drop);
        assert_eq!(
            comment.as_deref(),
            Some("block incoming localnet connections")
        );
        assert_eq!(
            conditions,
            [
                Condition::Source {
                    net: Net::LOOPBACK,
                    negated: true
                },
                Condition::Destination {
                    net: Net::LOOPBACK,
                    negated: false
                },
                Condition::CtState {
                    states: vec![
                        "related".to_owned(),
                        "established".to_owned(),
                        "dnat".to_owned()
                    ],
                    negated: true
                },
            ]
        );
    }

    #[test]
    fn reads_dockers_per_port_drop_and_what_it_does_not_know() {
        let words = split_words("-d 127.0.0.1/32 ! -i lo -p tcp -m tcp --dport 8080 -j DROP");
        let (conditions, action, _) = rule_of(&words, &str::to_owned);
        assert_eq!(action, Action::Drop);
        assert!(conditions.contains(&Condition::Port {
            protocol: Some(Protocol::Tcp),
            port: 8080
        }));
        assert!(conditions.contains(&Condition::Interface {
            names: vec![NameMatch::Exactly("lo".to_owned())],
            negated: true
        }));
        let words = split_words("-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS");
        let (conditions, action, _) = rule_of(&words, &str::to_owned);
        assert_eq!(action, Action::Jump("KUBE-NODEPORTS".to_owned()));
        assert_eq!(conditions, [Condition::Unknown("--dst-type".to_owned())]);
        let (_, action, _) = rule_of(&split_words("-j NOTRACK"), &str::to_owned);
        assert_eq!(action, Action::Unknown);
        assert_eq!(
            split_words(r#"-m comment --comment "a \"b\" c" -j X"#),
            ["-m", "comment", "--comment", r#"a "b" c"#, "-j", "X"]
        );
    }
}
