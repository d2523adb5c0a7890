use super::*;
use crate::exposure::ruleset::{Class, Destination, Outcome, Source};

fn ruleset(chains: &str, rules: &str) -> String {
    format!(
        r#"{{"nftables": [{{"metainfo": {{"json_schema_version": 1}}}},
        {{"table": {{"family": "inet", "name": "g", "handle": 1}}}}, {chains}, {rules}]}}"#
    )
}

const PREROUTING: &str = r#"{"chain": {"family": "inet", "table": "g", "name": "pre",
    "handle": 1, "type": "filter", "hook": "prerouting", "prio": -300, "policy": "accept"}}"#;
const IIFNAME_VRX: &str =
    r#"{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "vrx"}}"#;
const DADDR: &str = r#"{"match": {"op": "==", "left": {"payload": {"protocol": "ip",
    "field": "daddr"}}, "right": {"prefix": {"addr": "127.0.0.0", "len": 8}}}}"#;

fn rule(handle: u64, expressions: &[&str]) -> String {
    format!(
        r#"{{"rule": {{"family": "inet", "table": "g", "chain": "pre", "handle": {handle},
        "expr": [{}]}}}}"#,
        expressions.join(",")
    )
}

/// The outcome for frames from a non-loopback source to any of 127.0.0.0/8 arriving on `vrx`.
fn on_vrx(json: &str) -> Outcome {
    parse(json).unwrap().outcome("vrx", "vrx", &TO_LOOPBACK)
}

const TO_LOOPBACK: Class = Class {
    source: Source::Other,
    destination: Destination::Loopback(None),
    service: None,
};

#[test]
fn reads_a_prerouting_drop_of_loopback_destinations() {
    let json = ruleset(
        PREROUTING,
        &rule(2, &[IIFNAME_VRX, DADDR, r#"{"drop": null}"#]),
    );
    assert_eq!(
        on_vrx(&json),
        Outcome::Dropped("nft inet g pre handle 2".to_owned())
    );
    let parsed = parse(&json).unwrap();
    assert_eq!(
        parsed.outcome("vry", "vry", &TO_LOOPBACK),
        Outcome::Passed(None),
        "another link"
    );
    assert_eq!(
        parsed.chains["nft inet g pre"].base.as_ref().unwrap().hook,
        Hook::Prerouting
    );
}

#[test]
fn a_rule_sparing_lo_drops_on_every_link() {
    let not_lo = r#"{"match": {"op": "!=", "left": {"meta": {"key": "iifname"}}, "right": "lo"}}"#;
    assert!(counted(PREROUTING, &[not_lo, DADDR, DROP]));
    // Sparing any other device spares a link.
    let not_vrx = not_lo.replace(r#""lo""#, r#""vrx""#);
    assert!(!counted(PREROUTING, &[&not_vrx, DADDR, DROP]));
}

#[test]
fn reads_kubelets_rule_for_what_it_is() {
    let kubelet = [
        r#"{"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
            "right": {"prefix": {"addr": "127.0.0.0", "len": 8}}}}"#,
        DADDR,
        r#"{"match": {"op": "!=", "left": {"ct": {"key": "state"}},
            "right": {"set": ["established", "related"]}}}"#,
        r#"{"match": {"op": "!=", "left": {"ct": {"key": "status"}}, "right": "dnat"}}"#,
        r#"{"counter": {"packets": 0, "bytes": 0}}"#,
        r#"{"drop": null}"#,
    ];
    let input = PREROUTING.replace("prerouting", "input");
    let parsed = parse(&ruleset(&input, &rule(3, &kubelet))).unwrap();
    assert!(parsed.outcome("vrx", "vrx", &TO_LOOPBACK).dropped());
    // It spares frames whose source is loopback too.
    let from_loopback = Class {
        source: Source::Loopback,
        ..TO_LOOPBACK
    };
    assert_eq!(
        parsed.outcome("vrx", "vrx", &from_loopback),
        Outcome::Passed(None)
    );
}

#[test]
fn counts_only_what_it_understands() {
    let drop = r#"{"drop": null}"#;
    // Not a drop, another address, a match not understood.
    for expressions in [
        vec![DADDR, r#"{"accept": null}"#],
        vec![&DADDR.replace("127.0.0.0", "10.0.0.0"), drop],
        vec![
            r#"{"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "udp"}}"#,
            DADDR,
            drop,
        ],
    ] {
        assert!(!on_vrx(&ruleset(PREROUTING, &rule(2, &expressions))).dropped());
    }
    // After an accept the frame may have left the chain.
    let rules = format!(
        "{}, {}",
        rule(2, &[IIFNAME_VRX, r#"{"accept": null}"#]),
        rule(3, &[DADDR, drop])
    );
    assert!(!on_vrx(&ruleset(PREROUTING, &rules)).dropped());
    // A chain of another type or hook.
    let output = PREROUTING.replace("prerouting", "output");
    assert!(!on_vrx(&ruleset(&output, &rule(2, &[DADDR, drop]))).dropped());
    // A dormant table.
    let json = ruleset(PREROUTING, &rule(2, &[DADDR, drop])).replace(
        r#""name": "g", "handle": 1}"#,
        r#""name": "g", "handle": 1, "flags": ["dormant"]}"#,
    );
    assert!(!on_vrx(&json).dropped());
    assert!(parse("not json").is_err());
}

const DROP: &str = r#"{"drop": null}"#;

fn ct(key: &str, right: &str) -> String {
    format!(
        r#"{{"match": {{"op": "!=", "left": {{"ct": {{"key": "{key}"}}}}, "right": {right}}}}}"#
    )
}

fn counted(chain: &str, expressions: &[&str]) -> bool {
    on_vrx(&ruleset(chain, &rule(2, expressions))).dropped()
}

#[test]
fn a_table_counts_only_when_its_flags_leave_it_in_force() {
    let with_flags = |flags: &str| {
        ruleset(PREROUTING, &rule(2, &[DADDR, DROP])).replace(
            r#""name": "g", "handle": 1}"#,
            &format!(r#""name": "g", "handle": 1, "flags": {flags}}}"#),
        )
    };
    for flags in ["[]", r#"["owner"]"#, r#"["owner", "persist"]"#] {
        assert!(on_vrx(&with_flags(flags)).dropped(), "{flags}");
    }
    // Dormant, a flag not known, and any single flag written as a string: nft 1.0.6 writes
    // it from freed memory, so even "persist" may stand for dormant.
    for flags in [
        r#"["dormant"]"#,
        r#"["owner", "dormant"]"#,
        r#"["persist", "someday"]"#,
        r#""dormant""#,
        r#""g""#,
        r#""owner""#,
        r#""persist""#,
        "1",
        "null",
        r#"{"dormant": true}"#,
    ] {
        assert!(!on_vrx(&with_flags(flags)).dropped(), "{flags}");
    }
    // A chain whose table nft did not list.
    let json = ruleset(PREROUTING, &rule(2, &[DADDR, DROP]))
        .replace(r#""name": "g", "handle": 1"#, r#""name": "h", "handle": 1"#);
    assert!(!on_vrx(&json).dropped());
    // What nft 1.0.6 wrote here for `table ip g { flags dormant; chain p { type filter hook
    // prerouting priority 0; ip daddr 127.0.0.0/8 drop } }`: spoofed frames are delivered.
    let dormant = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name":
        "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "ip", "name": "g",
        "handle": 1, "flags": "g"}}, {"chain": {"family": "ip", "table": "g", "name": "p",
        "handle": 1, "type": "filter", "hook": "prerouting", "prio": 0, "policy": "accept"}},
        {"rule": {"family": "ip", "table": "g", "chain": "p", "handle": 2, "expr": [{"match":
        {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right":
        {"prefix": {"addr": "127.0.0.0", "len": 8}}}}, {"drop": null}]}}]}"#;
    assert!(!on_vrx(dormant).dropped());
    assert!(on_vrx(&dormant.replace(r#", "flags": "g""#, "")).dropped());
}

#[test]
fn counts_kubelets_ct_exceptions_and_no_other() {
    let input = PREROUTING.replace("prerouting", "input");
    let (established, related) = (r#""established""#, r#""related""#);
    for right in [
        established,
        related,
        r#"{"set": ["established", "related"]}"#,
        r#"{"set": ["related"]}"#,
        r#"{"|": ["established", "related"]}"#,
    ] {
        let state = ct("state", right);
        assert!(counted(&input, &[DADDR, &state, DROP]), "{state}");
        assert!(counted(PREROUTING, &[DADDR, &state, DROP]), "{state}");
    }
    // Spoofed frames are new (or invalid): these let them through.
    for right in [
        r#""new""#,
        r#""invalid""#,
        r#""untracked""#,
        r#"{"set": ["new"]}"#,
        r#"{"set": ["established", "new"]}"#,
        r#"{"|": ["related", "invalid"]}"#,
        r#"{"set": []}"#,
        r#"["established"]"#,
        r#"{"set": ["established"], "extra": 1}"#,
        "1",
    ] {
        let state = ct("state", right);
        assert!(!counted(&input, &[DADDR, &state, DROP]), "{state}");
    }
    let dnat = ct("status", r#""dnat""#);
    assert!(counted(&input, &[DADDR, &dnat, DROP]));
    for right in [r#"{"set": ["dnat"]}"#, r#"{"|": ["dnat"]}"#] {
        assert!(counted(&input, &[DADDR, &ct("status", right), DROP]));
    }
    for right in [
        r#""confirmed""#,
        r#""snat""#,
        r#"{"|": ["snat", "dnat"]}"#,
        r#"{"set": ["dnat", "seen-reply"]}"#,
    ] {
        let status = ct("status", right);
        assert!(!counted(&input, &[DADDR, &status, DROP]), "{status}");
    }
    // `ct status` matches nothing before conntrack (priority -200) has seen the frame.
    let at = |priority: &str| PREROUTING.replace("-300", priority);
    assert!(counted(&at("0"), &[DADDR, &dnat, DROP]));
    assert!(counted(&at("-199"), &[DADDR, &dnat, DROP]));
    for priority in ["-300", "-200", r#""raw""#] {
        assert!(!counted(&at(priority), &[DADDR, &dnat, DROP]), "{priority}");
    }
    // Only "!=" is an exception.
    let equal = ct("state", established).replace("!=", "==");
    assert!(!counted(&input, &[DADDR, &equal, DROP]));
}

#[test]
fn an_ingress_rule_counts_on_the_device_it_is_bound_to() {
    let netdev = |chain_extra: &str, expressions: &[&str]| {
        parse(&format!(
            r#"{{"nftables": [{{"table": {{"family": "netdev", "name": "t", "handle": 3}}}},
            {{"chain": {{"family": "netdev", "table": "t", "name": "c", "handle": 1,
            "type": "filter", "hook": "ingress", "prio": 0, "policy": "accept"{chain_extra}}}}},
            {{"rule": {{"family": "netdev", "table": "t", "chain": "c", "handle": 2,
            "expr": [{}]}}}}]}}"#,
            expressions.join(",")
        ))
        .unwrap()
    };
    let on = |parsed: &Ruleset, device: &str| parsed.outcome(device, device, &TO_LOOPBACK);
    // nft 1.0.6 names no device: the chain may see the link's frames or not, even with a rule
    // that names the link (bound to another device, it never sees them).
    let unbound = netdev("", &[IIFNAME_VRX, DADDR, DROP]);
    assert_eq!(
        on(&unbound, "vrx"),
        Outcome::Uncertain("nft netdev t c handle 2".to_owned())
    );
    // The text ruleset names it.
    let mut bound = unbound.clone();
    set_ingress_devices(
        &mut bound,
        "table netdev t {\n\tchain c {\n\t\ttype filter hook ingress device \"vrx\" priority \
         filter; policy accept;\n\t\tiifname \"vrx\" ip daddr 127.0.0.0/8 drop\n\t}\n}\n",
    );
    assert!(on(&bound, "vrx").dropped());
    assert_eq!(on(&bound, "vry"), Outcome::Passed(None));
    for dev in [r#", "dev": "vrx""#, r#", "dev": ["vrx"]"#] {
        let parsed = netdev(dev, &[DADDR, DROP]);
        assert!(on(&parsed, "vrx").dropped(), "{dev}");
        assert_eq!(on(&parsed, "vb"), Outcome::Passed(None), "{dev}");
    }
    let both = netdev(r#", "dev": ["vb", "vrx"]"#, &[DADDR, DROP]);
    assert!(on(&both, "vrx").dropped() && on(&both, "vb").dropped());
    // Before conntrack: `ct state` is invalid there and still matches, `ct status` does not.
    let dev = r#", "dev": "vrx""#;
    let state = ct("state", r#"{"set": ["established", "related"]}"#);
    assert!(on(&netdev(dev, &[DADDR, &state, DROP]), "vrx").dropped());
    let status = ct("status", r#""dnat""#);
    assert!(!on(&netdev(dev, &[DADDR, &status, DROP]), "vrx").dropped());
}

#[test]
fn reads_ct_state_as_nft_writes_a_flag_list() {
    // `ct state established,related accept` and `ct state established accept`, as nft 1.0.6
    // writes them: the spoofed frames are new, so they go on to the drop.
    let input = PREROUTING.replace("prerouting", "input");
    for right in [r#"["established", "related"]"#, r#""established""#] {
        let state = format!(
            r#"{{"match": {{"op": "in", "left": {{"ct": {{"key": "state"}}}}, "right": {right}}}}}"#
        );
        let rules = format!(
            "{}, {}",
            rule(2, &[&state, r#"{"accept": null}"#]),
            rule(3, &[DADDR, DROP])
        );
        assert!(on_vrx(&ruleset(&input, &rules)).dropped(), "{state}");
        // `in` of what may be new lets them through.
        let new = state.replace("established", "new");
        let rules = format!(
            "{}, {}",
            rule(2, &[&new, r#"{"accept": null}"#]),
            rule(3, &[DADDR, DROP])
        );
        assert!(!on_vrx(&ruleset(&input, &rules)).dropped(), "{new}");
    }
    // `in` of anything else is not understood.
    let other =
        r#"{"match": {"op": "in", "left": {"meta": {"key": "iifname"}}, "right": ["vrx"]}}"#;
    assert!(!counted(&input, &[other, DADDR, DROP]));
}

#[test]
fn interface_names_are_read_as_interfaces_hold_them() {
    assert_eq!(name_match("vr*"), Some(NameMatch::Prefix("vr".to_owned())));
    // `\*` is the character.
    assert_eq!(
        name_match("t\\*"),
        Some(NameMatch::Exactly("t*".to_owned()))
    );
    // A backslash is held doubled, so that it differs from the escape of a byte.
    assert_eq!(
        name_match("n\\xff"),
        Some(NameMatch::Exactly(crate::net::names::name_of_bytes(
            b"n\\xff"
        )))
    );
    assert_ne!(
        name_match("n\\xff"),
        Some(NameMatch::Exactly(crate::net::names::name_of_bytes(
            b"n\xff"
        )))
    );
    assert_eq!(name_match("n\u{fffd}"), None);
    // Sparing a name that may have lost bytes is not sparing this link: not understood.
    let lossy = IIFNAME_VRX.replace("==", "!=").replace("vrx", "n\u{fffd}");
    assert!(!counted(PREROUTING, &[&lossy, DADDR, DROP]));
}

/// An inet chain whose policy drops: rules that only IPv6 (or another EtherType) can meet let no
/// IPv4 frame out; one that IPv4 meets does.
#[test]
fn rules_of_another_family_do_not_spare_ipv4_from_a_policy_drop() {
    let policy_drop = PREROUTING
        .replace("prerouting", "input")
        .replace(r#""policy": "accept""#, r#""policy": "drop""#);
    let accept = r#"{"accept": null}"#;
    let family = |key: &str, op: &str, right: &str| {
        format!(
            r#"{{"match": {{"op": "{op}", "left": {{"meta": {{"key": "{key}"}}}}, "right": "{right}"}}}}"#
        )
    };
    let ip6_daddr = r#"{"match": {"op": "!=", "left": {"payload": {"protocol": "ip6",
        "field": "daddr"}}, "right": "::1"}}"#;
    let icmpv6 = r#"{"match": {"op": "==", "left": {"payload": {"protocol": "icmpv6",
        "field": "type"}}, "right": "nd-neighbor-solicit"}}"#;
    for (spares, expressions) in [
        (false, vec![ip6_daddr.to_owned()]),
        (false, vec![icmpv6.to_owned()]),
        (false, vec![family("nfproto", "==", "ipv6")]),
        (false, vec![family("nfproto", "!=", "ipv4")]),
        (false, vec![family("protocol", "==", "ip6")]),
        (true, vec![family("nfproto", "==", "ipv4")]),
        (true, vec![family("nfproto", "!=", "ipv6")]),
        (true, vec![family("protocol", "==", "ip")]),
    ] {
        let mut expressions: Vec<&str> = expressions.iter().map(String::as_str).collect();
        expressions.push(accept);
        let outcome = on_vrx(&ruleset(&policy_drop, &rule(2, &expressions)));
        assert_eq!(!outcome.dropped(), spares, "{expressions:?}: {outcome:?}");
    }
}
