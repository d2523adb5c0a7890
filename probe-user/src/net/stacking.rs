//! How devices stack: a macvlan, ipvlan or VLAN child receives its lower device's frames, a
//! bridge, bond or team its ports'. A link's frames reach the stack through every device stacked
//! on it, so route_localnet on any of them exposes the link.

use std::collections::BTreeMap;

use crate::net::{interfaces::Interface, route_localnet};

/// For each device, the devices stacked on it directly (see [`Interface::is_stacked_on`]).
pub struct Uppers<'a>(BTreeMap<u32, Vec<&'a Interface>>);

impl<'a> Uppers<'a> {
    pub fn of(all: &'a [Interface]) -> Self {
        let by_index: BTreeMap<u32, &Interface> = all.iter().map(|i| (i.ifindex, i)).collect();
        let mut uppers: BTreeMap<u32, Vec<&Interface>> = BTreeMap::new();
        for interface in all {
            // A child sits on its lower device.
            if let Some(lower) = interface.lower.and_then(|lower| by_index.get(&lower))
                && interface.is_stacked_on(lower)
            {
                uppers.entry(lower.ifindex).or_default().push(interface);
            }
            // A bridge, bond or team sits on its ports.
            if let Some(master) = interface.master.and_then(|master| by_index.get(&master))
                && master.is_stacked_on(interface)
            {
                uppers.entry(interface.ifindex).or_default().push(master);
            }
        }
        Self(uppers)
    }

    /// `interface` and every device stacked on it, directly or not: where its frames arrive.
    pub fn stacked(&self, interface: &'a Interface) -> Vec<&'a Interface> {
        let mut receivers = vec![interface];
        let mut next = 0;
        while let Some(lower) = receivers.get(next).copied() {
            for upper in self.0.get(&lower.ifindex).into_iter().flatten() {
                if !receivers.iter().any(|seen| seen.ifindex == upper.ifindex) {
                    receivers.push(upper);
                }
            }
            next += 1;
        }
        receivers
    }

    /// `interface` and every device stacked on it, directly or not, whose effective
    /// route_localnet is 1. `all_route_localnet` is `conf.all`, `None` when it could not be read.
    pub fn route_localnet_via(
        &self,
        interface: &'a Interface,
        all_route_localnet: Option<bool>,
    ) -> Vec<&'a Interface> {
        self.stacked(interface)
            .into_iter()
            .filter(|receiver| {
                receiver.route_localnet.is_some_and(|iface| {
                    route_localnet::effective(all_route_localnet == Some(true), iface)
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interface(name: &str, ifindex: u32, route_localnet: bool) -> Interface {
        Interface {
            route_localnet: Some(route_localnet),
            ..Interface::for_tests(name, ifindex)
        }
    }

    #[test]
    fn route_localnet_on_a_stacked_device_exposes_the_link_below() {
        let mut all = vec![
            interface("eth0", 2, false),
            Interface {
                kind: Some("macvlan".to_owned()),
                lower: Some(2),
                ..interface("mv0", 3, true)
            },
            interface("eth1", 4, false),
            Interface {
                kind: Some("bridge".to_owned()),
                ..interface("br0", 5, false)
            },
            Interface {
                kind: Some("vlan".to_owned()),
                lower: Some(5),
                ..interface("br0.7", 6, true)
            },
        ];
        all[2].master = Some(5);
        let uppers = Uppers::of(&all);
        let via = |interface, all_route_localnet| -> Vec<String> {
            uppers
                .route_localnet_via(interface, all_route_localnet)
                .into_iter()
                .map(|receiver| receiver.name.clone())
                .collect()
        };
        assert_eq!(via(&all[0], Some(false)), ["mv0"]);
        // eth1 → its bridge br0 → the VLAN on the bridge.
        assert_eq!(via(&all[2], Some(false)), ["br0.7"]);
        // conf.all=1 puts every device with IPv4 configuration in effect.
        assert_eq!(via(&all[2], Some(true)), ["eth1", "br0", "br0.7"]);
        all[1].route_localnet = None;
        let uppers = Uppers::of(&all);
        assert!(uppers.route_localnet_via(&all[0], Some(false)).is_empty());
    }
}
