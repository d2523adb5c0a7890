//! The nftables drops as `run` and `status` know them: read once at start and again whenever the
//! ruleset changes, on a thread of their own, so that reading them never delays the loop that
//! asks; the thread ends soon after the watch is dropped. nf_tables tells every change (nft, iptables-nft, firewalld, Docker) to the netlink
//! group `NFNLGRP_NFTABLES`; a reload that drops the ruleset and writes it anew is one burst of
//! messages, read as one change.

use std::{
    io,
    os::fd::AsRawFd as _,
    sync::{Arc, Mutex, PoisonError, Weak},
    thread,
    time::Duration,
};

use netlink_sys::{Socket, protocols::NETLINK_NETFILTER};
use serde::Serialize;

use super::{nft, ruleset::Ruleset};

/// nf_tables' multicast group (`NFNLGRP_NFTABLES` in linux/netfilter/nfnetlink.h).
const NFNLGRP_NFTABLES: u32 = 7;

/// How long a burst of ruleset messages may last before the ruleset is read: long enough for a
/// firewalld reload to finish, short enough that a rule gone is told within a second.
const SETTLE: Duration = Duration::from_millis(150);

/// The chains, or why the ruleset could not be read.
pub type Rules = Result<Ruleset, String>;

/// The chains of `rules`: none, where it could not be read, and that said.
pub fn chains_or_unread(rules: &Rules) -> Ruleset {
    match rules {
        Ok(ruleset) => ruleset.clone(),
        Err(why) => Ruleset {
            unread: vec![format!("the nftables ruleset could not be read ({why})")],
            ..Ruleset::default()
        },
    }
}

/// One reading of the ruleset.
#[derive(Clone, Debug)]
pub struct Reading {
    /// Counts the readings: a new number, a new reading.
    pub generation: u64,
    pub ruleset: Rules,
}

/// The latest reading of the ruleset, kept up to date by a thread that ends soon after the
/// watch is dropped.
#[derive(Debug)]
pub struct FirewallWatch {
    latest: Arc<Mutex<Reading>>,
}

impl FirewallWatch {
    /// Reads the ruleset and starts following its changes, in the network namespace of the
    /// calling thread. Without a netlink socket for them (no nf_tables in this kernel) the first
    /// reading is kept, and says so if it failed.
    pub fn start() -> Self {
        let latest = Arc::new(Mutex::new(Reading {
            generation: 0,
            ruleset: read(),
        }));
        match subscribe() {
            Ok(socket) => {
                let shared = Arc::downgrade(&latest);
                let spawned = thread::Builder::new()
                    .name("nft-watch".to_owned())
                    .spawn(move || follow(&socket, &shared));
                if let Err(error) = spawned {
                    tracing::warn!("nftables changes are not followed: {error}");
                }
            }
            // No nf_tables in the kernel yet, so no ruleset to follow: it is loaded with the
            // first ruleset (nft loads the module), and followed from then on.
            Err(error) if error.raw_os_error() == Some(libc::EPROTONOSUPPORT) => {
                let shared = Arc::downgrade(&latest);
                let spawned = thread::Builder::new()
                    .name("nft-watch".to_owned())
                    .spawn(move || wait_for_nf_tables(&shared));
                if let Err(error) = spawned {
                    tracing::warn!("nftables changes are not followed: {error}");
                }
            }
            Err(error) => {
                tracing::warn!("nftables changes are not followed: {error}");
            }
        }
        Self { latest }
    }

    /// A watch of one reading, never updated: for a view read once.
    pub fn once() -> Self {
        Self {
            latest: Arc::new(Mutex::new(Reading {
                generation: 0,
                ruleset: read(),
            })),
        }
    }

    /// The latest reading.
    pub fn latest(&self) -> Reading {
        self.latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The nftables ruleset (and iptables-legacy's), when nft is installed.
pub fn read() -> Rules {
    if super::inputs::which("nft") {
        nft::read_ruleset()
    } else {
        Err("nft is not installed".to_owned())
    }
}

/// How often the thread looks whether its watch is gone, while no change comes.
const LOOK_EVERY: Duration = Duration::from_secs(1);

fn subscribe() -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind_auto()?;
    socket.add_membership(NFNLGRP_NFTABLES)?;
    let timeout = libc::timeval {
        // Not `as libc::time_t`: musl's time_t is deprecated while it changes width.
        tv_sec: LOOK_EVERY
            .as_secs()
            .try_into()
            .expect("a second fits time_t"),
        tv_usec: 0,
    };
    // SAFETY: an open socket, and a timeval of the size given.
    let set = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const timeout).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if set != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(socket)
}

/// Waits until nf_tables is in the kernel, then reads the ruleset and follows it; ends when the
/// watch is dropped first.
fn wait_for_nf_tables(latest: &Weak<Mutex<Reading>>) {
    loop {
        thread::sleep(LOOK_EVERY);
        if latest.strong_count() == 0 {
            return;
        }
        match subscribe() {
            Ok(socket) => {
                update(latest, read());
                return follow(&socket, latest);
            }
            Err(error) if error.raw_os_error() == Some(libc::EPROTONOSUPPORT) => {}
            Err(error) => {
                tracing::warn!("nftables changes are not followed: {error}");
                return;
            }
        }
    }
}

/// Keeps `ruleset` as the latest reading, unless the watch is gone.
fn update(latest: &Weak<Mutex<Reading>>, ruleset: Rules) {
    if let Some(latest) = latest.upgrade() {
        let mut latest = latest.lock().unwrap_or_else(PoisonError::into_inner);
        latest.generation += 1;
        latest.ruleset = ruleset;
    }
}

/// Reads the ruleset anew after each burst of change messages, until the watch is dropped or
/// the socket fails.
fn follow(socket: &Socket, latest: &Weak<Mutex<Reading>>) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match socket.recv(&mut &mut buffer[..], 0) {
            Ok(_) => {}
            // Messages were lost (ENOBUFS): the ruleset changed all the same.
            Err(error) if error.raw_os_error() == Some(libc::ENOBUFS) => {}
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                if latest.strong_count() == 0 {
                    return;
                }
                continue;
            }
            Err(error) => {
                tracing::warn!("nftables changes are no longer followed: {error}");
                return;
            }
        }
        thread::sleep(SETTLE);
        if let Err(error) = drain(socket, &mut buffer) {
            tracing::warn!("nftables changes are no longer followed: {error}");
            return;
        }
        if latest.strong_count() == 0 {
            return;
        }
        update(latest, read());
    }
}

/// Reads every message waiting, without waiting for more.
fn drain(socket: &Socket, buffer: &mut [u8]) -> io::Result<()> {
    socket.set_non_blocking(true)?;
    let drained = loop {
        match socket.recv(&mut &mut buffer[..], 0) {
            Ok(_) => {}
            Err(error) if error.raw_os_error() == Some(libc::ENOBUFS) => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => break Ok(()),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => break Err(error),
        }
    };
    socket.set_non_blocking(false)?;
    drained
}

/// A change of the drops between two readings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "kebab-case")]
pub enum FirewallChange {
    /// A rule that dropped loopback frames is gone (deleted, or its table flushed, made dormant
    /// or replaced by a reload without it).
    Removed {
        rule: String,
    },
    Added {
        rule: String,
    },
    /// The ruleset can no longer be read: its drops are no longer counted.
    Unreadable {
        reason: String,
    },
    /// It can be read again.
    Readable,
}

impl FirewallChange {
    /// What happened, as a clause.
    pub fn clause(&self) -> String {
        match self {
            Self::Removed { rule } => format!("{rule}, which dropped loopback frames, was removed"),
            Self::Added { rule } => format!("{rule}, which drops loopback frames, was added"),
            Self::Unreadable { reason } => {
                format!(
                    "the nftables ruleset can no longer be read ({reason}); its drops no longer count"
                )
            }
            Self::Readable => "the nftables ruleset can be read again".to_owned(),
        }
    }
}

/// What changed from `old` to `new`.
pub fn changes(old: &Rules, new: &Rules) -> Vec<FirewallChange> {
    match (old, new) {
        (Ok(old), Ok(new)) => {
            let (old, new) = (old.loopback_drops(), new.loopback_drops());
            old.iter()
                .filter(|drop| !new.contains(drop))
                .map(|drop| FirewallChange::Removed { rule: drop.clone() })
                .chain(
                    new.iter()
                        .filter(|drop| !old.contains(drop))
                        .map(|drop| FirewallChange::Added { rule: drop.clone() }),
                )
                .collect()
        }
        (Ok(_), Err(reason)) => vec![FirewallChange::Unreadable {
            reason: reason.clone(),
        }],
        (Err(_), Ok(new)) => std::iter::once(FirewallChange::Readable)
            .chain(
                new.loopback_drops()
                    .into_iter()
                    .map(|rule| FirewallChange::Added { rule }),
            )
            .collect(),
        (Err(_), Err(_)) => Vec::new(),
    }
}

/// The ruleset as a sequence of snapshots sees it: the latest reading, and what changed since
/// the one the previous snapshot saw.
#[derive(Debug)]
pub struct Followed {
    watch: FirewallWatch,
    seen: Reading,
    /// The chains of `seen`.
    chains: Ruleset,
}

impl Followed {
    pub fn new(watch: FirewallWatch) -> Self {
        let seen = watch.latest();
        let chains = chains_or_unread(&seen.ruleset);
        Self {
            watch,
            seen,
            chains,
        }
    }

    /// The latest chains (none where the ruleset cannot be read, and that said), and what
    /// changed since the last call.
    pub fn update(&mut self) -> (&Ruleset, Vec<FirewallChange>) {
        let latest = self.watch.latest();
        let changes = if latest.generation == self.seen.generation {
            Vec::new()
        } else {
            let changes = changes(&self.seen.ruleset, &latest.ruleset);
            self.chains = chains_or_unread(&latest.ruleset);
            self.seen = latest;
            changes
        };
        (&self.chains, changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposure::ruleset::{Action, Base, Chain, Condition, Hook, Net, Rule};

    /// A prerouting chain with a drop of 127.0.0.0/8 for each handle.
    fn drops(handles: &[u64]) -> Rules {
        let mut ruleset = Ruleset::default();
        ruleset.chains.insert(
            "nft ip guard pre".to_owned(),
            Chain {
                label: "nft ip guard pre".to_owned(),
                base: Some(Base {
                    hook: Hook::Prerouting,
                    devices: Some(Vec::new()),
                    conntracked: false,
                    policy_drop: false,
                }),
                rules: handles
                    .iter()
                    .map(|handle| Rule {
                        label: label(*handle),
                        conditions: vec![Condition::Destination {
                            net: Net::LOOPBACK,
                            negated: false,
                        }],
                        action: Action::Drop,
                    })
                    .collect(),
            },
        );
        Ok(ruleset)
    }

    fn label(handle: u64) -> String {
        format!("nft ip guard pre handle {handle}")
    }

    #[test]
    fn says_each_rule_removed_or_added_and_a_ruleset_lost() {
        let removed = |handle| FirewallChange::Removed {
            rule: label(handle),
        };
        let added = |handle| FirewallChange::Added {
            rule: label(handle),
        };
        assert_eq!(changes(&drops(&[2]), &drops(&[2])), []);
        assert_eq!(
            changes(&drops(&[2, 3]), &drops(&[3, 4])),
            [removed(2), added(4)]
        );
        // A reload that writes the same rule under a new handle: one gone, one new.
        assert_eq!(changes(&drops(&[2]), &drops(&[7])), [removed(2), added(7)]);
        let lost: Rules = Err("nft is not installed".to_owned());
        assert_eq!(
            changes(&drops(&[2]), &lost),
            [FirewallChange::Unreadable {
                reason: "nft is not installed".to_owned()
            }]
        );
        assert_eq!(
            changes(&lost, &drops(&[2])),
            [FirewallChange::Readable, added(2)]
        );
        assert_eq!(changes(&lost, &lost), []);
    }
}
