//! The classifier against the shared case table, every truncation, and generated frames checked
//! against the standard library's notion of loopback.

use std::net::{Ipv4Addr, Ipv6Addr};

use probe_common::{Address, EthernetView, Family, LoopbackMatch, classify, classify_ip};
use proptest::prelude::*;
use test_frames::{
    FrameBuilder, TPID_8021AD, TPID_8021Q, TPID_QINQ_OLD, arp_reply, arp_request, cases, ipv4, ipv6,
};

#[test]
fn every_case_classifies_as_expected() {
    for case in cases() {
        assert_eq!(
            classify(case.frame.as_slice()),
            case.expected,
            "case {:?}",
            case.name
        );
    }
}

/// On layer-3 devices a packet starts at its IP header: every case, its link-layer headers
/// stripped, classifies as the whole frame does.
#[test]
fn packets_without_a_link_layer_classify_like_frames() {
    let mut ip_cases = 0;
    for case in cases() {
        let Some(ip_offset) = test_frames::ip_offset(&case.frame) else {
            continue;
        };
        assert_eq!(
            classify_ip(&case.frame[ip_offset..]),
            case.expected,
            "case {:?} without its link-layer headers",
            case.name
        );
        ip_cases += 1;
    }
    assert!(ip_cases > 20, "only {ip_cases} IP cases");
    // Bytes that are no IP packet: other version nibbles, nothing at all.
    for packet in [&[][..], &[0x00; 40], &[0x50; 40], &[0x7f; 40]] {
        assert_eq!(classify_ip(packet), None, "{packet:?}");
    }
}

/// Cooked captures (SLL, SLL2) give a packet and its ethertype without the Ethernet addresses:
/// every case, and every truncation of it, classifies through [`EthernetView`] as the frame
/// itself does, whatever its addresses were.
#[test]
fn packets_named_by_ethertype_classify_like_frames() {
    for case in cases() {
        let Some(ethertype) = case.frame.get(12..14) else {
            continue;
        };
        let ethertype = [ethertype[0], ethertype[1]];
        for len in 14..=case.frame.len() {
            assert_eq!(
                classify(&EthernetView::new(ethertype, &case.frame[14..len])),
                classify(&case.frame[..len]),
                "case {:?} cut to {len} bytes, seen from its ethertype",
                case.name
            );
        }
    }
}

/// A matching frame cut anywhere before the end of its IP header must not match; cut anywhere
/// after, it still must.
fn assert_truncations(builder: &FrameBuilder) {
    let frame = builder.build();
    let expected = classify(frame.as_slice());
    assert!(expected.is_some(), "{builder:?} should match whole");
    for len in 0..=frame.len() {
        let got = classify(&frame[..len]);
        if len < builder.ip_header_end() {
            assert_eq!(got, None, "{builder:?} cut to {len} bytes");
        } else {
            assert_eq!(got, expected, "{builder:?} cut to {len} bytes");
        }
    }
}

#[test]
fn truncation_at_every_offset() {
    let lo4 = Ipv4Addr::LOCALHOST;
    let lo6 = Ipv6Addr::LOCALHOST;
    let other4 = Ipv4Addr::new(198, 18, 0, 1);
    let other6: Ipv6Addr = "fd00::1".parse().unwrap();
    for builder in [
        ipv4(lo4, other4),
        ipv4(other4, lo4),
        ipv4(other4, lo4).ipv4_options(&[1; 12]),
        ipv4(other4, lo4).vlan(TPID_8021Q),
        ipv4(lo4, lo4).vlan(TPID_8021AD).vlan(TPID_8021Q),
        ipv6(lo6, other6),
        ipv6(other6, lo6).vlan(TPID_QINQ_OLD),
        ipv6(other6, test_frames::mapped(lo4))
            .vlan(TPID_8021AD)
            .vlan(TPID_8021Q),
        arp_request(other4, lo4),
        arp_reply(lo4, other4).vlan(TPID_8021AD).vlan(TPID_8021Q),
    ] {
        assert_truncations(&builder);
    }
}

fn expected_v4(source: Ipv4Addr, destination: Ipv4Addr) -> Option<LoopbackMatch> {
    let address = Address::from_flags(source.is_loopback(), destination.is_loopback())?;
    Some(LoopbackMatch {
        family: Family::Ipv4,
        address,
    })
}

fn expected_arp(sender: Ipv4Addr, target: Ipv4Addr) -> Option<LoopbackMatch> {
    let address = Address::from_flags(sender.is_loopback(), target.is_loopback())?;
    Some(LoopbackMatch {
        family: Family::Arp,
        address,
    })
}

fn v6_family(address: Ipv6Addr) -> Option<Family> {
    if address.is_loopback() {
        Some(Family::Ipv6)
    } else if address.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()) {
        Some(Family::Ipv4Mapped)
    } else {
        None
    }
}

fn expected_v6(source: Ipv6Addr, destination: Ipv6Addr) -> Option<LoopbackMatch> {
    let (source, destination) = (v6_family(source), v6_family(destination));
    let address = Address::from_flags(source.is_some(), destination.is_some())?;
    let family = if source == Some(Family::Ipv6) || destination == Some(Family::Ipv6) {
        Family::Ipv6
    } else {
        Family::Ipv4Mapped
    };
    Some(LoopbackMatch { family, address })
}

/// IPv4 addresses biased towards 127/8 and its neighbours.
fn any_v4() -> impl Strategy<Value = Ipv4Addr> {
    prop_oneof![
        any::<u32>().prop_map(Ipv4Addr::from),
        (126u8..=128, any::<[u8; 3]>())
            .prop_map(|(first, [b, c, d])| Ipv4Addr::new(first, b, c, d)),
    ]
}

/// IPv6 addresses biased towards `::1`, `::ffff:127/104` and their neighbours.
fn any_v6() -> impl Strategy<Value = Ipv6Addr> {
    prop_oneof![
        any::<u128>().prop_map(Ipv6Addr::from),
        (0u128..4).prop_map(Ipv6Addr::from),
        any_v4().prop_map(|v4| v4.to_ipv6_mapped()),
        (any_v4(), 0usize..16, any::<u8>()).prop_map(|(v4, byte, value)| {
            let mut octets = v4.to_ipv6_mapped().octets();
            octets[byte] = value;
            Ipv6Addr::from(octets)
        }),
    ]
}

fn any_vlans() -> impl Strategy<Value = Vec<u16>> {
    proptest::collection::vec(
        prop_oneof![Just(TPID_8021Q), Just(TPID_8021AD), Just(TPID_QINQ_OLD)],
        0..=2,
    )
}

fn with_vlans(mut builder: FrameBuilder, vlans: &[u16]) -> FrameBuilder {
    for tpid in vlans {
        builder = builder.vlan(*tpid);
    }
    builder
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn ipv4_matches_std_loopback(source in any_v4(), destination in any_v4(), vlans in any_vlans()) {
        let frame = with_vlans(ipv4(source, destination), &vlans).build();
        prop_assert_eq!(classify(frame.as_slice()), expected_v4(source, destination));
    }

    #[test]
    fn ipv6_matches_std_loopback(source in any_v6(), destination in any_v6(), vlans in any_vlans()) {
        let frame = with_vlans(ipv6(source, destination), &vlans).build();
        prop_assert_eq!(classify(frame.as_slice()), expected_v6(source, destination));
    }

    #[test]
    fn arp_matches_std_loopback(
        sender in any_v4(),
        target in any_v4(),
        operation in prop_oneof![Just(1u16), Just(2), any::<u16>()],
        vlans in any_vlans(),
    ) {
        let builder = test_frames::arp(etherparse::ArpOperation(operation), sender, target);
        let frame = with_vlans(builder, &vlans).build();
        prop_assert_eq!(classify(frame.as_slice()), expected_arp(sender, target));
    }

    #[test]
    fn ipv4_fragments_and_options_do_not_change_the_answer(
        source in any_v4(),
        destination in any_v4(),
        offset in 0u16..8192,
        more_fragments: bool,
        option_words in 0usize..=10,
    ) {
        let frame = ipv4(source, destination)
            .fragment(offset, more_fragments)
            .ipv4_options(&vec![1; option_words * 4])
            .build();
        prop_assert_eq!(classify(frame.as_slice()), expected_v4(source, destination));
    }

    #[test]
    fn arbitrary_ip_packets_agree_with_the_reference(packet in proptest::collection::vec(any::<u8>(), 0..64), six: bool) {
        // The same bytes behind an Ethernet header with the ethertype their version implies.
        let ethertype: [u8; 2] = if packet.first().is_some_and(|b| b >> 4 == 6) || (packet.is_empty() && six) {
            [0x86, 0xdd]
        } else {
            [0x08, 0x00]
        };
        let mut frame = vec![0; 12];
        frame.extend_from_slice(&ethertype);
        frame.extend_from_slice(&packet);
        let expected = match packet.first().map(|b| b >> 4) {
            Some(4 | 6) => reference_classify(&frame),
            _ => None,
        };
        prop_assert_eq!(classify_ip(packet.as_slice()), expected);
    }

    #[test]
    fn arbitrary_bytes_agree_with_the_reference(frame in proptest::collection::vec(any::<u8>(), 0..96)) {
        prop_assert_eq!(classify(frame.as_slice()), reference_classify(&frame));
    }

    #[test]
    fn mutated_frames_agree_with_the_reference(
        source in any_v4(),
        destination in any_v4(),
        kind in 0u8..3,
        vlans in any_vlans(),
        flips in proptest::collection::vec((0usize..80, any::<u8>()), 1..4),
    ) {
        let builder = match kind {
            0 => ipv4(source, destination),
            1 => ipv6(source.to_ipv6_mapped(), Ipv6Addr::LOCALHOST),
            _ => arp_request(source, destination),
        };
        let mut frame = with_vlans(builder, &vlans).build();
        for (index, value) in flips {
            if let Some(byte) = frame.get_mut(index) {
                *byte = value;
            }
        }
        prop_assert_eq!(classify(frame.as_slice()), reference_classify(&frame));
    }
}

/// The rules restated plainly over a slice, with the standard library deciding what is loopback.
fn reference_classify(frame: &[u8]) -> Option<LoopbackMatch> {
    let be16 = |at: usize| Some(u16::from_be_bytes(frame.get(at..at + 2)?.try_into().ok()?));
    let is_vlan = |ethertype| matches!(ethertype, 0x8100 | 0x88a8 | 0x9100);
    let (mut ethertype, mut ip) = (be16(12)?, 14);
    for _ in 0..2 {
        if is_vlan(ethertype) {
            ethertype = be16(ip + 2)?;
            ip += 4;
        }
    }
    let header = frame.get(ip..)?;
    match ethertype {
        0x0800 => {
            let header_len = usize::from(*header.first()? & 0x0f) * 4;
            if header[0] >> 4 != 4 || header_len < 20 || header.len() < header_len {
                return None;
            }
            let source: [u8; 4] = header[12..16].try_into().unwrap();
            let destination: [u8; 4] = header[16..20].try_into().unwrap();
            expected_v4(source.into(), destination.into())
        }
        0x86dd => {
            if header.len() < 40 || header[0] >> 4 != 6 {
                return None;
            }
            let source: [u8; 16] = header[8..24].try_into().unwrap();
            let destination: [u8; 16] = header[24..40].try_into().unwrap();
            expected_v6(source.into(), destination.into())
        }
        0x0806 => {
            let packet = etherparse::ArpPacketSlice::from_slice(header).ok()?;
            let ethernet_ipv4 = packet.hw_addr_type() == etherparse::ArpHardwareId::ETHERNET
                && packet.proto_addr_type() == etherparse::EtherType::IPV4
                && packet.hw_addr_size() == 6
                && packet.proto_addr_size() == 4;
            if !ethernet_ipv4 {
                return None;
            }
            let sender: [u8; 4] = packet.sender_protocol_addr().try_into().unwrap();
            let target: [u8; 4] = packet.target_protocol_addr().try_into().unwrap();
            expected_arp(sender.into(), target.into())
        }
        _ => None,
    }
}
