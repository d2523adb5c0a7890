//! The lines on stderr that say interfaces were attached to or removed, held to what a log
//! pipeline can afford under pod churn: one line per interface while they are few, one line per
//! kind and pattern for a burst (`attached to 37 interfaces matching 'veth*' (native XDP,
//! monitor mode): …`) and for whatever comes beyond the minute's allowance, said every
//! [`POOL_WINDOW`]. The JSON objects list every one (`attached`, `removed`).

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use probe_user::{
    net::names::{NamePattern, printable},
    output::report::InterfaceReport,
    probe::{
        attachment::{Hook, TcHook, XdpPrograms},
        native_refusal,
    },
    session::AttachedInterface,
};

/// A batch (start-up, one listing of the interfaces, one report's removals) larger than this is
/// said in one line per kind and pattern.
const BATCH_LINES: usize = 32;
/// Interfaces said one line each per minute, at most; more are pooled.
const LINES_PER_MINUTE: u32 = 64;
/// How often pooled interfaces are said.
const POOL_WINDOW: Duration = Duration::from_secs(10);
/// Names given in an aggregated line; the JSON has them all.
const NAMES_SHOWN: usize = 3;

/// What happened to interfaces: how each is said and how they are grouped.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// Attached to, or taken over; the parenthesis of the line (hook, egress, mode).
    Attached {
        verb: &'static str,
        how: String,
    },
    Removed,
}

/// Says attachments and removals on stderr, one line each or aggregated.
pub(super) struct Announcer {
    /// The selection's patterns, which name a group (`matching 'veth*'`).
    patterns: Vec<NamePattern>,
    /// Lines of one interface left in this minute.
    lines_left: u32,
    minute_started: Instant,
    /// Interfaces beyond the allowance, by kind and pattern, with their names.
    pool: BTreeMap<(Kind, Option<String>), Vec<String>>,
    pool_said: Instant,
}

impl Announcer {
    pub(super) fn new(patterns: &[NamePattern]) -> Self {
        let now = Instant::now();
        Self {
            patterns: patterns
                .iter()
                .filter(|pattern| matches!(pattern, NamePattern::Glob(_)))
                .cloned()
                .collect(),
            lines_left: LINES_PER_MINUTE,
            minute_started: now,
            pool: BTreeMap::new(),
            pool_said: now,
        }
    }

    /// Says what was attached or taken over, and where auto mode fell back to generic XDP.
    pub(super) fn attached(&mut self, attached: &[AttachedInterface], xdp: XdpPrograms) {
        let burst = attached.len() > BATCH_LINES;
        let mut grouped = BTreeMap::new();
        for interface in attached {
            let verb = if interface.adopted {
                "took over"
            } else {
                "attached to"
            };
            let kind = Kind::Attached {
                verb,
                how: how(interface, xdp),
            };
            if !burst && self.one_line_allowed() {
                if let Some(reason) = &interface.native_refused {
                    tracing::info!(
                        "{}: no native XDP here ({}); using generic XDP",
                        printable(&interface.name),
                        native_refusal(reason)
                    );
                }
                tracing::info!(
                    "{}",
                    line(&kind, std::slice::from_ref(&interface.name), None)
                );
            } else {
                let group = (kind, self.pattern_of(&interface.name));
                let names: &mut Vec<String> = if burst {
                    grouped.entry(group).or_default()
                } else {
                    self.pool.entry(group).or_default()
                };
                names.push(interface.name.clone());
            }
        }
        say_groups(grouped);
    }

    /// Says the interfaces a report found removed, with their final counts when said one by one.
    pub(super) fn removed(&mut self, removed: &[InterfaceReport]) {
        let burst = removed.len() > BATCH_LINES;
        let mut grouped = BTreeMap::new();
        for interface in removed {
            if !burst && self.one_line_allowed() {
                tracing::warn!(
                    "{} (ifindex {}) was removed; its final counts: {}",
                    printable(&interface.name),
                    interface.ifindex,
                    interface.totals
                );
            } else {
                let group = (Kind::Removed, self.pattern_of(&interface.name));
                let names: &mut Vec<String> = if burst {
                    grouped.entry(group).or_default()
                } else {
                    self.pool.entry(group).or_default()
                };
                names.push(interface.name.clone());
            }
        }
        say_groups(grouped);
    }

    /// Says the pooled interfaces, if [`POOL_WINDOW`] has passed since they last were (or
    /// `now_anyway`, at exit).
    pub(super) fn say_pooled(&mut self, now_anyway: bool) {
        if now_anyway || self.pool_said.elapsed() >= POOL_WINDOW {
            self.pool_said = Instant::now();
            say_groups(std::mem::take(&mut self.pool));
        }
    }

    /// Whether one more interface may have a line of its own this minute.
    fn one_line_allowed(&mut self) -> bool {
        if self.minute_started.elapsed() >= Duration::from_secs(60) {
            self.minute_started = Instant::now();
            self.lines_left = LINES_PER_MINUTE;
        }
        let allowed = self.lines_left > 0;
        self.lines_left = self.lines_left.saturating_sub(1);
        allowed
    }

    /// The first of the selection's patterns that matches `name`.
    fn pattern_of(&self, name: &str) -> Option<String> {
        self.patterns
            .iter()
            .find(|pattern| pattern.matches(name))
            .map(ToString::to_string)
    }
}

/// One line per group.
fn say_groups(groups: BTreeMap<(Kind, Option<String>), Vec<String>>) {
    for ((kind, pattern), names) in groups {
        match kind {
            Kind::Attached { .. } => {
                tracing::info!("{}", line(&kind, &names, pattern.as_deref()));
            }
            Kind::Removed => tracing::warn!("{}", line(&kind, &names, pattern.as_deref())),
        }
    }
}

/// The line for `names`: of one interface by its name, else of how many (matching `pattern`),
/// the first few named; printable.
fn line(kind: &Kind, names: &[String], pattern: Option<&str>) -> String {
    let subject = match names {
        [name] => name.clone(),
        _ => {
            let mut shown = names
                .iter()
                .take(NAMES_SHOWN)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            if names.len() > NAMES_SHOWN {
                shown.push_str(&format!(", … and {} more", names.len() - NAMES_SHOWN));
            }
            let matching = pattern.map_or(String::new(), |p| format!(" matching '{p}'"));
            format!("{} interfaces{matching} ({shown})", names.len())
        }
    };
    let said = match kind {
        Kind::Attached { verb, how } => format!("{verb} {subject} ({how})"),
        Kind::Removed if names.len() == 1 => format!("{subject} was removed"),
        Kind::Removed => format!(
            "{subject} were removed; their final counts are in the totals and the JSON objects' \
             `removed`"
        ),
    };
    printable(&said).into_owned()
}

/// Hook, egress and mode, as said in parentheses.
fn how(attached: &AttachedInterface, xdp: XdpPrograms) -> String {
    let hook = match attached.hook {
        Hook::Xdp(mode) if xdp == XdpPrograms::Linear => {
            format!("{} XDP, without multi-buffer", mode.name())
        }
        Hook::Xdp(mode) => format!("{} XDP", mode.name()),
        Hook::Tc(tc) => {
            let how = match tc {
                TcHook::Tcx => "",
                // Taken over, it is a filter because the standing filter was pinned as one.
                TcHook::Clsact if attached.adopted => " (a clsact filter)",
                TcHook::Clsact => " (a clsact filter: this kernel has no tcx)",
            };
            let beside = if attached.adopted {
                ""
            } else {
                ", beside another XDP program"
            };
            format!("{} ingress{how}{beside}", tc.name())
        }
    };
    let egress = attached
        .egress
        .map(|egress| format!("; replies counted at {} egress", egress.name()))
        .unwrap_or_default();
    format!("{hook}{egress}, {} mode", attached.mode.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_name_one_interface_or_count_a_group() {
        let attached = Kind::Attached {
            verb: "attached to",
            how: "native XDP, monitor mode".to_owned(),
        };
        assert_eq!(
            line(&attached, &["eth0".to_owned()], None),
            "attached to eth0 (native XDP, monitor mode)"
        );
        let names: Vec<String> = (0..37).map(|n| format!("veth{n}")).collect();
        assert_eq!(
            line(&attached, &names, Some("veth*")),
            "attached to 37 interfaces matching 'veth*' (veth0, veth1, veth2, … and 34 more) \
             (native XDP, monitor mode)"
        );
        assert_eq!(
            line(&Kind::Removed, &names[..2], None),
            "2 interfaces (veth0, veth1) were removed; their final counts are in the totals and \
             the JSON objects' `removed`"
        );
        assert_eq!(
            line(&Kind::Removed, &["a\u{1b}[2Jb".to_owned()], None),
            "a\\u{1b}[2Jb was removed"
        );
    }

    #[test]
    fn one_line_each_until_the_minutes_allowance_is_used() {
        let mut announcer = Announcer::new(&[]);
        let allowed = (0..100).filter(|_| announcer.one_line_allowed()).count();
        assert_eq!(allowed, LINES_PER_MINUTE as usize);
        announcer.minute_started -= Duration::from_secs(61);
        assert!(announcer.one_line_allowed());
    }
}
