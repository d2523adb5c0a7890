//! The packet filter's chains as far as they matter here, from any source (nftables' JSON,
//! iptables-nft-save for what nft shows as an opaque `xt` match, iptables-legacy-save), and what
//! they do to one class of spoofed frames: every base chain a frame from a link meets before
//! local delivery is walked, jumps followed, in three-valued logic. A rule is taken for a drop of
//! a class only when it matches every frame of the class (the sender picks the frames: a rule
//! that drops some of them drops none that matter) and no rule before it may have let them leave
//! the chain; what is not understood makes the answer uncertain, never a drop.

use std::{collections::BTreeMap, net::Ipv4Addr};

use serde::Serialize;

use super::sockets::Protocol;

/// Where a base chain sits, for the hooks that see frames from a link before local delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Hook {
    /// netdev (or inet) ingress of the devices it is bound to.
    Ingress,
    Prerouting,
    Input,
}

/// An IPv4 prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net {
    pub address: Ipv4Addr,
    pub len: u8,
}

impl Net {
    pub const LOOPBACK: Self = Self {
        address: Ipv4Addr::new(127, 0, 0, 0),
        len: 8,
    };

    fn mask(len: u8) -> u32 {
        if len == 0 { 0 } else { u32::MAX << (32 - len) }
    }

    pub fn contains(&self, address: Ipv4Addr) -> bool {
        let mask = Self::mask(self.len);
        u32::from(address) & mask == u32::from(self.address) & mask
    }

    /// Whether every address of `other` is in this prefix.
    fn covers(&self, other: &Self) -> bool {
        self.len <= other.len && self.contains(other.address)
    }

    /// Whether no address of `other` is in this prefix.
    fn disjoint(&self, other: &Self) -> bool {
        !self.covers(other) && !other.covers(self)
    }
}

/// An interface name a rule matches: exactly, or every name with this prefix (nft's `"veth*"`,
/// iptables' `veth+`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameMatch {
    Exactly(String),
    Prefix(String),
}

impl NameMatch {
    fn matches(&self, name: &str) -> bool {
        match self {
            Self::Exactly(exactly) => exactly == name,
            Self::Prefix(prefix) => name.starts_with(prefix.as_str()),
        }
    }
}

/// One match of a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// The device the frame arrived on is (not, when `negated`) one of these.
    Interface {
        names: Vec<NameMatch>,
        negated: bool,
    },
    Source {
        net: Net,
        negated: bool,
    },
    Destination {
        net: Net,
        negated: bool,
    },
    Protocol {
        protocol: Protocol,
        negated: bool,
    },
    /// A TCP or UDP destination port; only on that protocol (nft's payload match depends on it).
    Port {
        protocol: Option<Protocol>,
        port: u16,
    },
    /// nft's `ct state` or iptables' `--ctstate`/`--state`, lowercase (`dnat`, `snat`: the
    /// virtual states of iptables' conntrack match).
    CtState {
        states: Vec<String>,
        negated: bool,
    },
    /// nft's `ct status`: it matches nothing before conntrack has seen the frame.
    CtStatus {
        statuses: Vec<String>,
        negated: bool,
    },
    /// Always true for the frames here (IPv4, a comment).
    Always,
    /// Not understood: it may match or not.
    Unknown(String),
}

/// What a rule does once its matches hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Drop or reject: the frame never reaches a socket.
    Drop,
    Accept,
    Jump(String),
    Goto(String),
    Return,
    /// Counts, logs: the next rule follows.
    Continue,
    /// A statement not understood: the frame may leave the chain here.
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// `nft ip filter KUBE-FIREWALL handle 2`, with its comment when it has one.
    pub label: String,
    pub conditions: Vec<Condition>,
    pub action: Action,
}

/// How a base chain is attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Base {
    pub hook: Hook,
    /// An ingress chain's devices; `None` where they could not be read (its rules then may or
    /// may not see a link's frames).
    pub devices: Option<Vec<String>>,
    /// Whether every frame it sees has a conntrack entry already (input, or prerouting after
    /// conntrack's priority -200); before it, and at ingress, `ct status` matches nothing.
    pub conntracked: bool,
    pub policy_drop: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    /// `nft ip filter INPUT`, `iptables-legacy raw PREROUTING`.
    pub label: String,
    pub base: Option<Base>,
    pub rules: Vec<Rule>,
}

/// Conntrack's own prerouting priority (`NF_IP_PRI_CONNTRACK`).
pub const CONNTRACK_PRIORITY: i64 = -200;

/// The chains that see frames from a link, by a key unique in the ruleset (`family table name`,
/// or the source's own), and what could not be read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub chains: BTreeMap<String, Chain>,
    /// Parts of the packet filter that could not be read, each a clause: their rules are not
    /// counted, so a frame they may drop is said to be uncertain where nothing else drops it.
    pub unread: Vec<String>,
}

/// The source address of a class of spoofed frames, the sender's choice within it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Any address outside 127.0.0.0/8.
    Other,
    /// Any 127.x the routing accepts from a link (rp_filter 0, or accept_local).
    Loopback,
}

/// The destination address of a class of frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// This loopback address, or (`None`) any of 127.0.0.0/8.
    Loopback(Option<Ipv4Addr>),
    /// One of the host's own addresses outside 127.0.0.0/8 (a loopback source to a service on
    /// the wildcard address).
    Host,
}

/// A class of frames from a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Class {
    pub source: Source,
    pub destination: Destination,
    /// The protocol and destination port, or any (`None`).
    pub service: Option<(Protocol, u16)>,
}

/// Whether a rule's matches hold for a class of frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Holds {
    All,
    Some,
    None,
    Unknown,
}

impl Holds {
    fn and(self, other: Self) -> Self {
        use Holds::*;
        match (self, other) {
            (None, _) | (_, None) => None,
            (Unknown, _) | (_, Unknown) => Unknown,
            (Some, _) | (_, Some) => Some,
            (All, All) => All,
        }
    }

    fn not(self) -> Self {
        match self {
            Self::All => Self::None,
            Self::None => Self::All,
            other => other,
        }
    }

    fn of(holds: bool) -> Self {
        if holds { Self::All } else { Self::None }
    }

    /// What a match that holds for `self` of the frames is, for the frames that reached it
    /// through a jump that held for `scale` of them.
    fn within(self, scale: Self) -> Self {
        match (scale, self) {
            (_, Self::None) => Self::None,
            (Self::All, holds) => holds,
            (Self::Some, Self::Unknown) | (Self::Unknown, _) => Self::Unknown,
            (Self::Some, _) => Self::Some,
            (Self::None, _) => Self::None,
        }
    }
}

/// How much of the class of frames `net` holds for, among `within`'s addresses.
fn net_holds(net: &Net, within: &Net) -> Holds {
    if net.covers(within) {
        Holds::All
    } else if net.disjoint(within) {
        Holds::None
    } else {
        Holds::Some
    }
}

/// Where a frame is when a chain sees it.
struct Seen<'a> {
    /// The device it arrived on, as `iifname` sees it; `None`: any.
    interface: Option<&'a str>,
    class: &'a Class,
    conntracked: bool,
}

impl Condition {
    fn holds(&self, seen: &Seen) -> Holds {
        let class = seen.class;
        match self {
            Self::Interface { names, negated } => {
                let Some(interface) = seen.interface else {
                    return Holds::Unknown;
                };
                let holds = Holds::of(names.iter().any(|name| name.matches(interface)));
                if *negated { holds.not() } else { holds }
            }
            Self::Source { net, negated } => {
                let holds = match class.source {
                    Source::Loopback => net_holds(net, &Net::LOOPBACK),
                    // Every address but 127.0.0.0/8: a prefix covers all of them only if it
                    // is everything.
                    Source::Other if net.len == 0 => Holds::All,
                    Source::Other if Net::LOOPBACK.covers(net) => Holds::None,
                    Source::Other => Holds::Some,
                };
                if *negated { holds.not() } else { holds }
            }
            Self::Destination { net, negated } => {
                let holds = match class.destination {
                    Destination::Loopback(Some(address)) => Holds::of(net.contains(address)),
                    Destination::Loopback(None) => net_holds(net, &Net::LOOPBACK),
                    Destination::Host if net.len == 0 => Holds::All,
                    Destination::Host if Net::LOOPBACK.covers(net) => Holds::None,
                    Destination::Host => Holds::Some,
                };
                if *negated { holds.not() } else { holds }
            }
            Self::Protocol { protocol, negated } => {
                let holds = match class.service {
                    Some((wanted, _)) => Holds::of(wanted == *protocol),
                    None => Holds::Some,
                };
                if *negated { holds.not() } else { holds }
            }
            Self::Port { protocol, port } => match class.service {
                Some((wanted, wanted_port)) => {
                    Holds::of(protocol.is_none_or(|p| p == wanted) && wanted_port == *port)
                }
                None => Holds::Some,
            },
            Self::CtState { states, negated } => {
                // A spoofed frame starts no connection, nor one NATed: it is new, or invalid
                // (its flags are the sender's), or untracked where a rule said so; before
                // conntrack has seen it, invalid (no entry) or untracked.
                let possible: &[&str] = if seen.conntracked {
                    &["new", "invalid", "untracked"]
                } else {
                    &["invalid", "untracked"]
                };
                let matched = possible
                    .iter()
                    .filter(|state| states.iter().any(|s| s == *state))
                    .count();
                let holds = match matched {
                    0 => Holds::None,
                    all if all == possible.len() => Holds::All,
                    _ => Holds::Some,
                };
                if *negated { holds.not() } else { holds }
            }
            Self::CtStatus { statuses, negated } => {
                if !seen.conntracked {
                    return Holds::None;
                }
                // Of the statuses only a NAT is known never to be set on a spoofed frame's new
                // entry.
                if statuses.iter().all(|status| status == "dnat") && !statuses.is_empty() {
                    if *negated { Holds::All } else { Holds::None }
                } else {
                    Holds::Unknown
                }
            }
            Self::Always => Holds::All,
            Self::Unknown(_) => Holds::Unknown,
        }
    }
}

/// What the packet filter does to a class of frames.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "rule", rename_all = "kebab-case")]
pub enum Outcome {
    /// Every frame of the class is dropped, by this rule (or chain policy).
    Dropped(String),
    /// Some get through; by this rule when one lets them, `None` when nothing stops them.
    Passed(Option<String>),
    /// This rule may drop them, or let them leave a chain that would: not understood fully.
    Uncertain(String),
    /// A part of the packet filter that could not be read may drop them.
    Unread(String),
}

impl Outcome {
    pub fn dropped(&self) -> bool {
        matches!(self, Self::Dropped(_))
    }

    /// Frames dropped if either drops them; uncertain if either is and neither drops them.
    pub fn or(self, other: Self) -> Self {
        match (self, other) {
            (dropped @ Self::Dropped(_), _) | (_, dropped @ Self::Dropped(_)) => dropped,
            (uncertain @ (Self::Uncertain(_) | Self::Unread(_)), _)
            | (_, uncertain @ (Self::Uncertain(_) | Self::Unread(_))) => uncertain,
            (Self::Passed(None), passed) => passed,
            (passed, _) => passed,
        }
    }

    /// Frames dropped only if both drop them (two classes, or two paths).
    pub fn and(self, other: Self) -> Self {
        match (self, other) {
            (passed @ Self::Passed(_), _) | (_, passed @ Self::Passed(_)) => passed,
            (uncertain @ (Self::Uncertain(_) | Self::Unread(_)), _)
            | (_, uncertain @ (Self::Uncertain(_) | Self::Unread(_))) => uncertain,
            (dropped, _) => dropped,
        }
    }
}

/// A walk of one base chain and the chains it jumps to.
#[derive(Default)]
struct Walk {
    /// A rule that let some of the frames leave the chain.
    escaped: Option<String>,
    /// A rule not understood that may have let them leave.
    maybe_left: Option<String>,
    /// A rule not understood that may have dropped them.
    maybe_dropped: Option<String>,
}

/// How a chain walked ended.
enum Flow {
    /// Its end or a return: the caller goes on.
    Returned,
    /// A verdict that ends the base chain's walk.
    Ended(Outcome),
}

/// Jumps followed at most this deep (the kernel allows 16).
const MAX_DEPTH: usize = 16;

impl Ruleset {
    /// What the base chains do to `class` of frames arriving on `arrived_on` and reaching the
    /// stack through `receiver` (the same device, or one stacked on it: a macvlan child, a
    /// bridge).
    pub fn outcome(&self, arrived_on: &str, receiver: &str, class: &Class) -> Outcome {
        let mut outcome = Outcome::Passed(None);
        for chain in self.chains.values() {
            let Some(base) = &chain.base else { continue };
            let devices: Vec<Option<&str>> = match (base.hook, &base.devices) {
                (Hook::Ingress, Some(devices)) => devices
                    .iter()
                    .filter(|device| *device == arrived_on || *device == receiver)
                    .map(|device| Some(device.as_str()))
                    .collect(),
                // Bound to devices not known: it may see them or not.
                (Hook::Ingress, None) => vec![None],
                _ => vec![Some(receiver)],
            };
            for device in devices {
                let seen = Seen {
                    interface: device,
                    class,
                    conntracked: base.conntracked,
                };
                let scale = if device.is_none() {
                    Holds::Unknown
                } else {
                    Holds::All
                };
                outcome = outcome.or(self.walk_base(chain, base, &seen, scale));
            }
        }
        if !outcome.dropped()
            && let Some(unread) = self.unread.first()
        {
            return Outcome::Unread(unread.clone());
        }
        outcome
    }

    fn walk_base(&self, chain: &Chain, base: &Base, seen: &Seen, scale: Holds) -> Outcome {
        let mut walk = Walk::default();
        if let Flow::Ended(outcome) = self.walk(chain, seen, scale, &mut walk, 0) {
            return outcome;
        }
        if base.policy_drop {
            let policy = format!("{} policy drop", chain.label);
            if scale != Holds::All {
                return Outcome::Uncertain(policy);
            }
            return match (walk.escaped, walk.maybe_left) {
                (Some(escaped), _) => Outcome::Passed(Some(escaped)),
                (None, Some(maybe)) => Outcome::Uncertain(maybe),
                (None, None) => Outcome::Dropped(policy),
            };
        }
        match (walk.escaped, walk.maybe_dropped) {
            (Some(escaped), _) => Outcome::Passed(Some(escaped)),
            (None, Some(maybe)) => Outcome::Uncertain(maybe),
            (None, None) => Outcome::Passed(None),
        }
    }

    fn walk(
        &self,
        chain: &Chain,
        seen: &Seen,
        scale: Holds,
        walk: &mut Walk,
        depth: usize,
    ) -> Flow {
        for rule in &chain.rules {
            let holds = rule
                .conditions
                .iter()
                .fold(Holds::All, |holds, condition| {
                    holds.and(condition.holds(seen))
                })
                .within(scale);
            if holds == Holds::None {
                continue;
            }
            let label = || rule.label.clone();
            match (&rule.action, holds) {
                (Action::Continue, _) => {}
                (Action::Drop, Holds::All) => {
                    return Flow::Ended(match (&walk.escaped, &walk.maybe_left) {
                        (Some(escaped), _) => Outcome::Passed(Some(escaped.clone())),
                        (None, Some(maybe)) => Outcome::Uncertain(maybe.clone()),
                        (None, None) => Outcome::Dropped(label()),
                    });
                }
                // Some dropped, the others go on: only a later rule can drop them all.
                (Action::Drop, Holds::Some) => {}
                (Action::Drop, _) => {
                    walk.maybe_dropped.get_or_insert_with(label);
                }
                (Action::Accept, Holds::All) => {
                    return Flow::Ended(match &walk.maybe_dropped {
                        Some(maybe) => Outcome::Uncertain(maybe.clone()),
                        None => Outcome::Passed(Some(walk.escaped.clone().unwrap_or_else(label))),
                    });
                }
                // Some leave the chain here, for good or to the caller's next rule.
                (Action::Accept | Action::Goto(_) | Action::Return, Holds::Some) => {
                    walk.escaped.get_or_insert_with(label);
                }
                (Action::Jump(target), _) | (Action::Goto(target), _) => {
                    if let Flow::Ended(outcome) = self.jump(target, seen, holds, walk, depth, rule)
                    {
                        return Flow::Ended(outcome);
                    }
                    if matches!(rule.action, Action::Goto(_)) && holds == Holds::All {
                        return Flow::Returned;
                    }
                    if matches!(rule.action, Action::Goto(_)) {
                        walk.maybe_left.get_or_insert_with(label);
                    }
                }
                (Action::Return, Holds::All) => return Flow::Returned,
                (Action::Accept | Action::Return | Action::Unknown, _) => {
                    walk.maybe_left.get_or_insert_with(label);
                }
            }
        }
        Flow::Returned
    }

    fn jump(
        &self,
        target: &str,
        seen: &Seen,
        holds: Holds,
        walk: &mut Walk,
        depth: usize,
        rule: &Rule,
    ) -> Flow {
        match self.chains.get(target) {
            Some(chain) if depth < MAX_DEPTH => self.walk(chain, seen, holds, walk, depth + 1),
            _ => {
                walk.maybe_left.get_or_insert_with(|| rule.label.clone());
                Flow::Returned
            }
        }
    }

    /// The rules (and chain policies) that may drop frames with loopback addresses from some
    /// link: what a change of the ruleset is told by.
    pub fn loopback_drops(&self) -> Vec<String> {
        let classes = [
            Class {
                source: Source::Other,
                destination: Destination::Loopback(None),
                service: None,
            },
            Class {
                source: Source::Loopback,
                destination: Destination::Host,
                service: None,
            },
        ];
        let mut drops = Vec::new();
        for chain in self.chains.values() {
            let conntracked = chain.base.as_ref().is_none_or(|base| base.conntracked);
            for rule in chain
                .rules
                .iter()
                .filter(|rule| rule.action == Action::Drop)
            {
                let matches_some = classes.iter().any(|class| {
                    let seen = Seen {
                        interface: None,
                        class,
                        conntracked,
                    };
                    rule.conditions
                        .iter()
                        .fold(Holds::All, |holds, c| holds.and(c.holds(&seen)))
                        != Holds::None
                });
                if matches_some && !drops.contains(&rule.label) {
                    drops.push(rule.label.clone());
                }
            }
            if chain.base.as_ref().is_some_and(|base| base.policy_drop) {
                drops.push(format!("{} policy drop", chain.label));
            }
        }
        drops
    }
}

#[cfg(test)]
mod tests;
