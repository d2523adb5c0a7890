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
