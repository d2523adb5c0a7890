//! The network namespace as the probe sees it, without anything loaded: its interfaces and how
//! they stack (stacking), notice of links coming and going (rtnetlink), the sysctls that decide whether
//! loopback addresses are routed (route_localnet), the privileges this process holds, the
//! name of the namespace (netns), who is behind the links that lead to other namespaces
//! (workload), and who a sender's MAC address is (neighbours).

pub(crate) mod interfaces;
pub mod link_events;
pub mod names;
pub mod neighbours;
pub mod netns;
pub(crate) mod privileges;
pub mod route_localnet;
pub(crate) mod rtnetlink;
pub(crate) mod stacking;
pub(crate) mod sysctl;
pub mod workload;

/// Formats a MAC address the usual way, `02:00:00:00:00:01`.
pub fn mac_string(mac: [u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}
