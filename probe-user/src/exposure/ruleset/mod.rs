//! The packet filter's chains as far as they matter here, from any source (nftables' JSON,
//! iptables-nft-save for what nft shows as an opaque `xt` match, iptables-legacy-save), and what
//! they do to one class of spoofed frames: every base chain a frame from a link meets before
//! local delivery is walked, jumps followed, in three-valued logic. A rule is taken for a drop of
//! a class only when it matches every frame of the class (the sender picks the frames: a rule
//! that drops some of them drops none that matter) and no rule before it may have let them leave
//! the chain; what is not understood makes the answer uncertain, never a drop. The model is here,
//! the walk in [`walk`].

use std::{collections::BTreeMap, net::Ipv4Addr};

use serde::Serialize;

use super::{installers::Installed, sockets::Protocol};

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
    /// Never true for them: a match only IPv6 (or another protocol than IPv4) can meet.
    Never,
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
    /// The projects whose tables or chains are here that set route_localnet on their devices.
    pub installers: Vec<Installed>,
}

/// `family table name`, the key of a chain in [`Ruleset::chains`] (iptables' chains are those of
/// the `ip` family, as iptables-nft writes them).
pub fn chain_key(family: &str, table: &str, name: &str) -> String {
    format!("nft {family} {table} {name}")
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

mod walk;

#[cfg(test)]
mod tests;
