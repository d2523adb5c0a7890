//! What the process may do, checked before anything is loaded so the error names what is missing.

use caps::{CapSet, Capability};

/// `None` when the effective set allows loading and attaching XDP programs; otherwise one
/// sentence saying what is missing.
pub fn missing() -> Option<String> {
    let effective = match caps::read(None, CapSet::Effective) {
        Ok(effective) => effective,
        Err(error) => return Some(format!("cannot read this process's capabilities: {error}")),
    };
    let bpf =
        effective.contains(&Capability::CAP_BPF) || effective.contains(&Capability::CAP_SYS_ADMIN);
    let net_admin = effective.contains(&Capability::CAP_NET_ADMIN);
    let missing: Vec<&str> = [
        (!bpf).then_some("CAP_BPF"),
        (!net_admin).then_some("CAP_NET_ADMIN"),
    ]
    .into_iter()
    .flatten()
    .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "localnet-probe needs {} to load and attach XDP programs: run it as root (sudo), or \
             with exactly CAP_BPF and CAP_NET_ADMIN (e.g. `setpriv --inh-caps=-all,+bpf,+net_admin \
             --ambient-caps=-all,+bpf,+net_admin …`)",
            missing.join(" and ")
        )
    })
}

/// `None` when the effective set allows reading pinned maps and links (`CAP_BPF`); otherwise
/// what is missing.
pub fn missing_to_read() -> Option<String> {
    let effective = match caps::read(None, CapSet::Effective) {
        Ok(effective) => effective,
        Err(error) => return Some(format!("cannot read this process's capabilities: {error}")),
    };
    let bpf =
        effective.contains(&Capability::CAP_BPF) || effective.contains(&Capability::CAP_SYS_ADMIN);
    (!bpf).then(|| {
        "reading the standing filter's pins needs CAP_BPF: run it as root (sudo), or with \
         CAP_BPF and CAP_DAC_OVERRIDE (the BPF file system belongs to root)"
            .to_owned()
    })
}

/// Whether this process may list every loaded program and its maps (CAP_SYS_ADMIN).
pub fn may_list_programs() -> bool {
    caps::read(None, CapSet::Effective)
        .is_ok_and(|effective| effective.contains(&Capability::CAP_SYS_ADMIN))
}
