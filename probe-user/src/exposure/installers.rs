//! The projects whose rules show they set route_localnet=1 on a device of theirs, for DNAT to
//! a port on 127.0.0.1, and add no drop of the frames it lets in: CNI's portmap plugin
//! (containernetworking/plugins, `enableLocalnetRouting` on the host's interface toward the
//! container, for a hostPort reached on localhost) and netavark (containers/netavark, on each
//! bridge it routes). Recognised by the tables and chains they create, in nftables or
//! iptables (nft, iptables-nft or iptables-legacy).

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Installer {
    CniPortmap,
    Netavark,
}

impl Installer {
    /// Its name and what it does with route_localnet, as a clause.
    pub const fn sets(self) -> &'static str {
        match self {
            Self::CniPortmap => {
                "CNI portmap sets route_localnet=1 on the host's interface toward a container for \
                 a hostPort reached on localhost"
            }
            Self::Netavark => {
                "netavark (Podman) sets route_localnet=1 on each bridge it routes, for a published \
                 port reached on localhost"
            }
        }
    }

    /// Which of them made the nftables table `family name`: portmap's nftables backend
    /// (`table ip cni_hostport`, `ip6` too), netavark's (`table inet netavark`).
    pub fn of_table(family: &str, name: &str) -> Option<Self> {
        match (family, name) {
            ("ip" | "ip6", "cni_hostport") => Some(Self::CniPortmap),
            ("inet", "netavark") => Some(Self::Netavark),
            _ => None,
        }
    }

    /// Which of them made the iptables chain `name`: portmap's `CNI-HOSTPORT-DNAT` and
    /// per-container `CNI-DN-…`, netavark's `NETAVARK-HOSTPORT-DNAT`, `NETAVARK_FORWARD`, ….
    pub fn of_chain(name: &str) -> Option<Self> {
        if name == "CNI-HOSTPORT-DNAT" || name.starts_with("CNI-DN-") {
            Some(Self::CniPortmap)
        } else if name.starts_with("NETAVARK-") || name.starts_with("NETAVARK_") {
            Some(Self::Netavark)
        } else {
            None
        }
    }
}

/// A project recognised, and the table or chain it was recognised by.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Installed {
    pub installer: Installer,
    /// `nft ip nat CNI-HOSTPORT-DNAT`, `nft table inet netavark`.
    pub by: String,
}

/// Adds `installer`, seen in `by`, to `installed` unless it is there already.
pub fn note(
    installed: &mut Vec<Installed>,
    installer: Option<Installer>,
    by: impl FnOnce() -> String,
) {
    if let Some(installer) = installer
        && !installed.iter().any(|known| known.installer == installer)
    {
        installed.push(Installed {
            installer,
            by: by(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_the_tables_and_chains_they_create() {
        assert_eq!(
            Installer::of_table("ip", "cni_hostport"),
            Some(Installer::CniPortmap)
        );
        assert_eq!(
            Installer::of_table("inet", "netavark"),
            Some(Installer::Netavark)
        );
        assert_eq!(Installer::of_table("inet", "cni_hostport"), None);
        assert_eq!(
            Installer::of_chain("CNI-HOSTPORT-DNAT"),
            Some(Installer::CniPortmap)
        );
        assert_eq!(
            Installer::of_chain("CNI-DN-7a3b5c1e9f0d2a4b6c8e1"),
            Some(Installer::CniPortmap)
        );
        assert_eq!(
            Installer::of_chain("NETAVARK-HOSTPORT-DNAT"),
            Some(Installer::Netavark)
        );
        assert_eq!(
            Installer::of_chain("NETAVARK_FORWARD"),
            Some(Installer::Netavark)
        );
        // Other CNI plugins' chains (bridge's ipMasq, firewall) set no route_localnet.
        assert_eq!(Installer::of_chain("CNI-FORWARD"), None);
        assert_eq!(Installer::of_chain("KUBE-FIREWALL"), None);
        let mut installed = Vec::new();
        note(
            &mut installed,
            Installer::of_chain("CNI-HOSTPORT-DNAT"),
            || "a".to_owned(),
        );
        note(&mut installed, Installer::of_chain("CNI-DN-1"), || {
            "b".to_owned()
        });
        note(&mut installed, None, || "c".to_owned());
        assert_eq!(
            installed,
            [Installed {
                installer: Installer::CniPortmap,
                by: "a".to_owned()
            }]
        );
    }
}
