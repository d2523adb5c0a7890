//! The walk of a ruleset for one class of frames: each rule's matches in three-valued logic
//! (all, some, none of the class, or not known), jumps and gotos followed, and what ends the
//! walk of each base chain.

use super::{
    Action, Base, Chain, Class, Condition, Destination, Hook, Net, Outcome, Rule, Ruleset, Source,
};

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
            Self::Never => Holds::None,
            Self::Unknown(_) => Holds::Unknown,
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
