//! Ethernet frames for localnet-probe's tests and benchmarks, and the classification each one must
//! get. The same [`cases`] drive the host tests of the classifier and the `BPF_PROG_TEST_RUN`
//! tests of the compiled program, so both sides are held to one table.

use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::{
    ArpEthIpv4Packet, ArpOperation, EtherType, Ethernet2Header, IpFragOffset, IpNumber, Ipv4Header,
    Ipv6FlowLabel, Ipv6Header, SingleVlanHeader, UdpHeader, VlanId, VlanPcp,
};
use probe_common::{Address, Family, LoopbackMatch};

pub const TPID_8021Q: u16 = 0x8100;
pub const TPID_8021AD: u16 = 0x88a8;
pub const TPID_QINQ_OLD: u16 = 0x9100;

const DEFAULT_SOURCE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const DEFAULT_DESTINATION_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

#[derive(Clone, Debug)]
enum IpHeader {
    V4(Ipv4Header),
    V6(Ipv6Header),
    /// An ARP packet, whose hardware addresses are the frame's unless set with
    /// [`FrameBuilder::arp_macs`].
    Arp {
        operation: ArpOperation,
        sender: Ipv4Addr,
        target: Ipv4Addr,
        macs: Option<([u8; 6], [u8; 6])>,
    },
}

/// A UDP datagram (or an ARP packet) in an Ethernet frame, optionally VLAN-tagged.
#[derive(Clone, Debug)]
pub struct FrameBuilder {
    source_mac: [u8; 6],
    destination_mac: [u8; 6],
    vlan_tpids: Vec<u16>,
    ip: IpHeader,
    source_port: u16,
    destination_port: u16,
    payload: Vec<u8>,
}

/// An IPv4/UDP frame from `source` to `destination`.
pub fn ipv4(source: Ipv4Addr, destination: Ipv4Addr) -> FrameBuilder {
    let header = Ipv4Header::new(0, 64, IpNumber::UDP, source.octets(), destination.octets())
        .expect("an empty payload fits");
    FrameBuilder::new(IpHeader::V4(header))
}

/// An IPv6/UDP frame from `source` to `destination`.
pub fn ipv6(source: Ipv6Addr, destination: Ipv6Addr) -> FrameBuilder {
    FrameBuilder::new(IpHeader::V6(Ipv6Header {
        traffic_class: 0,
        flow_label: Ipv6FlowLabel::ZERO,
        payload_length: 0,
        next_header: IpNumber::UDP,
        hop_limit: 64,
        source: source.octets(),
        destination: destination.octets(),
    }))
}

/// An ARP request "who has `target`? tell `sender`", broadcast.
pub fn arp_request(sender: Ipv4Addr, target: Ipv4Addr) -> FrameBuilder {
    arp(ArpOperation::REQUEST, sender, target).macs(DEFAULT_SOURCE_MAC, [0xff; 6])
}

/// An ARP reply "`sender` is at (the frame's source MAC)", to `target`.
pub fn arp_reply(sender: Ipv4Addr, target: Ipv4Addr) -> FrameBuilder {
    arp(ArpOperation::REPLY, sender, target)
}

/// An ARP packet (IPv4 over Ethernet) with any operation.
pub fn arp(operation: ArpOperation, sender: Ipv4Addr, target: Ipv4Addr) -> FrameBuilder {
    let mut builder = FrameBuilder::new(IpHeader::Arp {
        operation,
        sender,
        target,
        macs: None,
    });
    builder.payload.clear();
    builder
}

impl FrameBuilder {
    fn new(ip: IpHeader) -> Self {
        Self {
            source_mac: DEFAULT_SOURCE_MAC,
            destination_mac: DEFAULT_DESTINATION_MAC,
            vlan_tpids: Vec::new(),
            ip,
            source_port: 40000,
            destination_port: 9,
            payload: b"localnet-probe test".to_vec(),
        }
    }

    pub fn macs(mut self, source: [u8; 6], destination: [u8; 6]) -> Self {
        self.source_mac = source;
        self.destination_mac = destination;
        self
    }

    /// Adds a VLAN tag with this TPID inside the ones already added.
    pub fn vlan(mut self, tpid: u16) -> Self {
        self.vlan_tpids.push(tpid);
        self
    }

    /// Sets an ARP packet's sender and target hardware addresses, which otherwise are the
    /// frame's source and destination (zero for a broadcast request's target).
    pub fn arp_macs(mut self, sender: [u8; 6], target: [u8; 6]) -> Self {
        let IpHeader::Arp { macs, .. } = &mut self.ip else {
            panic!("arp_macs() is for ARP frames");
        };
        *macs = Some((sender, target));
        self
    }

    pub fn ports(mut self, source: u16, destination: u16) -> Self {
        self.source_port = source;
        self.destination_port = destination;
        self
    }

    /// The bytes after the UDP header, or after an ARP packet (padding).
    pub fn payload(mut self, payload: &[u8]) -> Self {
        self.payload = payload.to_vec();
        self
    }

    /// Makes the IPv4 packet a fragment at `offset` (in 8-byte units) with the MF bit as given.
    pub fn fragment(mut self, offset: u16, more_fragments: bool) -> Self {
        let IpHeader::V4(header) = &mut self.ip else {
            panic!("fragment() is for IPv4 frames");
        };
        header.dont_fragment = false;
        header.more_fragments = more_fragments;
        header.fragment_offset = IpFragOffset::try_new(offset).expect("offset fits 13 bits");
        self
    }

    /// Adds IPv4 options (a multiple of 4 bytes, at most 40), raising the IHL above 5.
    pub fn ipv4_options(mut self, options: &[u8]) -> Self {
        let IpHeader::V4(header) = &mut self.ip else {
            panic!("ipv4_options() is for IPv4 frames");
        };
        header.options = options.try_into().expect("valid options length");
        self
    }

    /// Offset of the IP header: 14 plus 4 per VLAN tag.
    pub fn ip_offset(&self) -> usize {
        Ethernet2Header::LEN + SingleVlanHeader::LEN * self.vlan_tpids.len()
    }

    /// Length up to the end of the IP header (options included).
    pub fn ip_header_end(&self) -> usize {
        self.ip_offset()
            + match &self.ip {
                IpHeader::V4(header) => header.header_len(),
                IpHeader::V6(_) => Ipv6Header::LEN,
                IpHeader::Arp { .. } => ArpEthIpv4Packet::LEN,
            }
    }

    pub fn build(&self) -> Vec<u8> {
        let udp_len = UdpHeader::LEN + self.payload.len();
        let mut frame = Vec::with_capacity(self.ip_header_end() + udp_len);

        let ip_ethertype = match self.ip {
            IpHeader::V4(_) => EtherType::IPV4,
            IpHeader::V6(_) => EtherType::IPV6,
            IpHeader::Arp { .. } => EtherType::ARP,
        };
        let mut ethertypes: Vec<EtherType> =
            self.vlan_tpids.iter().copied().map(EtherType).collect();
        ethertypes.push(ip_ethertype);

        Ethernet2Header {
            source: self.source_mac,
            destination: self.destination_mac,
            ether_type: ethertypes[0],
        }
        .write(&mut frame)
        .expect("writing to a Vec");
        for (index, next_ethertype) in ethertypes[1..].iter().enumerate() {
            SingleVlanHeader {
                pcp: VlanPcp::ZERO,
                drop_eligible_indicator: false,
                vlan_id: VlanId::try_new(100 + index as u16).expect("valid VLAN id"),
                ether_type: *next_ethertype,
            }
            .write(&mut frame)
            .expect("writing to a Vec");
        }

        match &self.ip {
            IpHeader::V4(header) => {
                let mut header = header.clone();
                header
                    .set_payload_len(udp_len)
                    .expect("payload fits an IPv4 packet");
                header.header_checksum = header.calc_header_checksum();
                header.write(&mut frame).expect("writing to a Vec");
                UdpHeader::with_ipv4_checksum(
                    self.source_port,
                    self.destination_port,
                    &header,
                    &self.payload,
                )
                .expect("payload fits a UDP datagram")
                .write(&mut frame)
                .expect("writing to a Vec");
            }
            IpHeader::V6(header) => {
                let mut header = header.clone();
                header
                    .set_payload_length(udp_len)
                    .expect("payload fits an IPv6 packet");
                header.write(&mut frame).expect("writing to a Vec");
                UdpHeader::with_ipv6_checksum(
                    self.source_port,
                    self.destination_port,
                    &header,
                    &self.payload,
                )
                .expect("payload fits a UDP datagram")
                .write(&mut frame)
                .expect("writing to a Vec");
            }
            IpHeader::Arp {
                operation,
                sender,
                target,
                macs,
            } => {
                let (sender_mac, target_mac) = macs.unwrap_or_else(|| {
                    let broadcast = self.destination_mac == [0xff; 6];
                    let target_mac = if broadcast {
                        [0; 6]
                    } else {
                        self.destination_mac
                    };
                    (self.source_mac, target_mac)
                });
                let packet = ArpEthIpv4Packet {
                    operation: *operation,
                    sender_mac,
                    sender_ipv4: sender.octets(),
                    target_mac,
                    target_ipv4: target.octets(),
                };
                frame.extend_from_slice(&packet.to_bytes());
            }
        }
        frame.extend_from_slice(&self.payload);
        frame
    }
}

/// Where the IP header of an IPv4 or IPv6 frame behind at most two VLAN tags starts: what a
/// layer-3 device would deliver of the frame.
pub fn ip_offset(frame: &[u8]) -> Option<usize> {
    let mut offset = 12;
    for _ in 0..3 {
        match u16::from_be_bytes(frame.get(offset..offset + 2)?.try_into().ok()?) {
            0x0800 | 0x86dd => return Some(offset + 2),
            0x8100 | 0x88a8 | 0x9100 => offset += 4,
            _ => return None,
        }
    }
    None
}

/// One frame and what the classifier must say of it.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: &'static str,
    pub frame: Vec<u8>,
    pub expected: Option<LoopbackMatch>,
}

fn matched(family: Family, address: Address) -> Option<LoopbackMatch> {
    Some(LoopbackMatch { family, address })
}

const BENIGN_V4_A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const BENIGN_V4_B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const BENIGN_V6_A: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
const BENIGN_V6_B: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);

/// `::ffff:a.b.c.d`.
pub fn mapped(address: Ipv4Addr) -> Ipv6Addr {
    address.to_ipv6_mapped()
}

/// Every matching form, the boundaries around them, VLAN stacks, fragments and malformed headers.
pub fn cases() -> Vec<Case> {
    use Address::{Both, Destination, Source};
    use Family::{Ipv4, Ipv4Mapped, Ipv6};

    let lo4 = Ipv4Addr::LOCALHOST;
    let lo6 = Ipv6Addr::LOCALHOST;
    let v4 = |name, source, destination, expected| Case {
        name,
        frame: ipv4(source, destination).build(),
        expected,
    };
    let v6 = |name, source, destination, expected| Case {
        name,
        frame: ipv6(source, destination).build(),
        expected,
    };
    let mut ihl_4 = ipv4(lo4, BENIGN_V4_B).build();
    ihl_4[Ethernet2Header::LEN] = 0x44;
    let mut ihl_15_short = ipv4(BENIGN_V4_A, lo4).payload(&[0; 8]).build();
    ihl_15_short[Ethernet2Header::LEN] = 0x4f;
    let mut version_6_in_ipv4 = ipv4(lo4, BENIGN_V4_B).build();
    version_6_in_ipv4[Ethernet2Header::LEN] = 0x65;
    let mut version_4_in_ipv6 = ipv6(lo6, BENIGN_V6_B).build();
    version_4_in_ipv6[Ethernet2Header::LEN] = 0x40;

    vec![
        v4("benign ipv4", BENIGN_V4_A, BENIGN_V4_B, None),
        v4(
            "ipv4 loopback source",
            lo4,
            BENIGN_V4_B,
            matched(Ipv4, Source),
        ),
        v4(
            "ipv4 loopback destination",
            BENIGN_V4_A,
            lo4,
            matched(Ipv4, Destination),
        ),
        v4(
            "ipv4 loopback both",
            lo4,
            Ipv4Addr::new(127, 9, 9, 9),
            matched(Ipv4, Both),
        ),
        v4(
            "ipv4 127.0.0.0",
            Ipv4Addr::new(127, 0, 0, 0),
            BENIGN_V4_B,
            matched(Ipv4, Source),
        ),
        v4(
            "ipv4 127.255.255.255",
            BENIGN_V4_A,
            Ipv4Addr::new(127, 255, 255, 255),
            matched(Ipv4, Destination),
        ),
        v4(
            "ipv4 126.255.255.255",
            Ipv4Addr::new(126, 255, 255, 255),
            Ipv4Addr::new(126, 255, 255, 255),
            None,
        ),
        v4(
            "ipv4 128.0.0.0",
            Ipv4Addr::new(128, 0, 0, 0),
            Ipv4Addr::new(128, 0, 0, 0),
            None,
        ),
        v6("benign ipv6", BENIGN_V6_A, BENIGN_V6_B, None),
        v6("ipv6 ::1 source", lo6, BENIGN_V6_B, matched(Ipv6, Source)),
        v6(
            "ipv6 ::1 destination",
            BENIGN_V6_A,
            lo6,
            matched(Ipv6, Destination),
        ),
        v6("ipv6 ::1 both", lo6, lo6, matched(Ipv6, Both)),
        v6(
            "ipv6 ::2",
            "::2".parse().unwrap(),
            "::2".parse().unwrap(),
            None,
        ),
        v6(
            "ipv6 ::",
            Ipv6Addr::UNSPECIFIED,
            Ipv6Addr::UNSPECIFIED,
            None,
        ),
        v6(
            "ipv6 1::1",
            "1::1".parse().unwrap(),
            "1::1".parse().unwrap(),
            None,
        ),
        v6(
            "ipv4-mapped source",
            mapped(lo4),
            BENIGN_V6_B,
            matched(Ipv4Mapped, Source),
        ),
        v6(
            "ipv4-mapped destination",
            BENIGN_V6_A,
            mapped(Ipv4Addr::new(127, 255, 255, 255)),
            matched(Ipv4Mapped, Destination),
        ),
        v6(
            "ipv4-mapped both",
            mapped(Ipv4Addr::new(127, 0, 0, 0)),
            mapped(lo4),
            matched(Ipv4Mapped, Both),
        ),
        v6(
            "ipv6 ::1 and ipv4-mapped",
            mapped(lo4),
            lo6,
            matched(Ipv6, Both),
        ),
        v6(
            "ipv4-mapped 128.0.0.1",
            mapped(Ipv4Addr::new(128, 0, 0, 1)),
            mapped(Ipv4Addr::new(128, 0, 0, 1)),
            None,
        ),
        v6(
            "ipv4-mapped 126.255.255.255",
            mapped(Ipv4Addr::new(126, 255, 255, 255)),
            BENIGN_V6_B,
            None,
        ),
        v6(
            "ipv4-compatible ::127.0.0.1",
            "::127.0.0.1".parse().unwrap(),
            BENIGN_V6_B,
            None,
        ),
        v6(
            "::fffe:127.0.0.1",
            "::fffe:7f00:1".parse().unwrap(),
            BENIGN_V6_B,
            None,
        ),
        v6(
            "::1:ffff:127.0.0.1",
            "::1:ffff:7f00:1".parse().unwrap(),
            BENIGN_V6_B,
            None,
        ),
        Case {
            name: "802.1Q ipv4 loopback destination",
            frame: ipv4(BENIGN_V4_A, lo4).vlan(TPID_8021Q).build(),
            expected: matched(Ipv4, Destination),
        },
        Case {
            name: "802.1Q benign ipv4",
            frame: ipv4(BENIGN_V4_A, BENIGN_V4_B).vlan(TPID_8021Q).build(),
            expected: None,
        },
        Case {
            name: "802.1ad+802.1Q ipv6 ::1",
            frame: ipv6(lo6, BENIGN_V6_B)
                .vlan(TPID_8021AD)
                .vlan(TPID_8021Q)
                .build(),
            expected: matched(Ipv6, Source),
        },
        Case {
            name: "0x9100+0x9100 ipv4 loopback",
            frame: ipv4(lo4, BENIGN_V4_B)
                .vlan(TPID_QINQ_OLD)
                .vlan(TPID_QINQ_OLD)
                .build(),
            expected: matched(Ipv4, Source),
        },
        Case {
            name: "three VLAN tags are not parsed",
            frame: ipv4(lo4, lo4)
                .vlan(TPID_8021AD)
                .vlan(TPID_8021Q)
                .vlan(TPID_8021Q)
                .build(),
            expected: None,
        },
        Case {
            name: "ipv4 first fragment",
            frame: ipv4(BENIGN_V4_A, lo4).fragment(0, true).build(),
            expected: matched(Ipv4, Destination),
        },
        Case {
            name: "ipv4 non-first fragment",
            frame: ipv4(BENIGN_V4_A, lo4).fragment(185, false).build(),
            expected: matched(Ipv4, Destination),
        },
        Case {
            name: "ipv4 with options (IHL 15)",
            frame: ipv4(lo4, BENIGN_V4_B).ipv4_options(&[1; 40]).build(),
            expected: matched(Ipv4, Source),
        },
        Case {
            name: "ipv4 IHL 4",
            frame: ihl_4,
            expected: None,
        },
        Case {
            name: "ipv4 IHL 15 past the frame end",
            frame: ihl_15_short,
            expected: None,
        },
        Case {
            name: "ipv4 ethertype, version 6",
            frame: version_6_in_ipv4,
            expected: None,
        },
        Case {
            name: "ipv6 ethertype, version 4",
            frame: version_4_in_ipv6,
            expected: None,
        },
        Case {
            name: "short ethernet",
            frame: vec![0xff; 13],
            expected: None,
        },
        Case {
            name: "empty frame",
            frame: Vec::new(),
            expected: None,
        },
        Case {
            name: "ipv4 header cut at the destination",
            frame: ipv4(BENIGN_V4_A, lo4).build()[..Ethernet2Header::LEN + 19].to_vec(),
            expected: None,
        },
        Case {
            name: "ipv4 bytes behind the arp ethertype",
            frame: {
                let mut frame = ipv4(lo4, lo4).build();
                frame[12..14].copy_from_slice(&[0x08, 0x06]);
                frame
            },
            expected: None,
        },
    ]
    .into_iter()
    .chain(arp_cases())
    .collect()
}

/// ARP packets: the loopback forms, their boundaries, tags, and the fields that make an ARP
/// packet one for IPv4 over Ethernet.
fn arp_cases() -> Vec<Case> {
    use Address::{Both, Destination, Source};
    use Family::Arp;

    let lo4 = Ipv4Addr::LOCALHOST;
    let resolver = Ipv4Addr::new(127, 0, 0, 53);
    let arp_start = Ethernet2Header::LEN;
    // Changes the byte `at` (from the ARP packet's start) of a who-has 127.0.0.1.
    let altered = |at: usize, value: u8| {
        let mut frame = arp_request(BENIGN_V4_A, lo4).build();
        frame[arp_start + at] = value;
        frame
    };
    let case = |name, frame, expected| Case {
        name,
        frame,
        expected,
    };
    vec![
        case(
            "arp benign request",
            arp_request(BENIGN_V4_A, BENIGN_V4_B).build(),
            None,
        ),
        case(
            "arp benign reply",
            arp_reply(BENIGN_V4_B, BENIGN_V4_A).build(),
            None,
        ),
        case(
            "arp who-has 127.0.0.1",
            arp_request(BENIGN_V4_A, lo4).build(),
            matched(Arp, Destination),
        ),
        case(
            "arp who-has 127.0.0.53",
            arp_request(BENIGN_V4_A, resolver).build(),
            matched(Arp, Destination),
        ),
        case(
            "arp 127.0.0.1 is-at",
            arp_reply(lo4, BENIGN_V4_A).build(),
            matched(Arp, Source),
        ),
        case(
            "arp request from 127.0.0.5",
            arp_request(Ipv4Addr::new(127, 0, 0, 5), BENIGN_V4_B).build(),
            matched(Arp, Source),
        ),
        case(
            "arp gratuitous 127.0.0.1",
            arp_request(lo4, lo4).build(),
            matched(Arp, Both),
        ),
        case(
            "arp 127.255.255.255 and 127.0.0.0",
            arp_reply(
                Ipv4Addr::new(127, 255, 255, 255),
                Ipv4Addr::new(127, 0, 0, 0),
            )
            .build(),
            matched(Arp, Both),
        ),
        case(
            "arp 126.255.255.255 and 128.0.0.0",
            arp_request(
                Ipv4Addr::new(126, 255, 255, 255),
                Ipv4Addr::new(128, 0, 0, 0),
            )
            .build(),
            None,
        ),
        case(
            "arp inverse request (operation 8) for 127.0.0.1",
            arp(ArpOperation(8), BENIGN_V4_A, lo4).build(),
            matched(Arp, Destination),
        ),
        case(
            "arp padded to 60 bytes",
            arp_request(BENIGN_V4_A, lo4).payload(&[0; 18]).build(),
            matched(Arp, Destination),
        ),
        case(
            "802.1Q arp who-has 127.0.0.1",
            arp_request(BENIGN_V4_A, lo4).vlan(TPID_8021Q).build(),
            matched(Arp, Destination),
        ),
        case(
            "802.1ad+802.1Q arp 127.0.0.1 is-at",
            arp_reply(lo4, BENIGN_V4_A)
                .vlan(TPID_8021AD)
                .vlan(TPID_8021Q)
                .build(),
            matched(Arp, Source),
        ),
        case(
            "arp behind three VLAN tags is not parsed",
            arp_request(lo4, lo4)
                .vlan(TPID_8021AD)
                .vlan(TPID_8021Q)
                .vlan(TPID_8021Q)
                .build(),
            None,
        ),
        // Linux answers IEEE 802's hardware type on Ethernet as it does Ethernet's.
        case(
            "arp hardware type 6 (ieee 802)",
            altered(1, 6),
            matched(Arp, Destination),
        ),
        case("arp hardware type 7", altered(1, 7), None),
        case("arp hardware type 0x0101", altered(0, 1), None),
        case("arp protocol type not ipv4", altered(2, 0x86), None),
        case("arp hardware length 8", altered(4, 8), None),
        case("arp protocol length 16", altered(5, 16), None),
        case(
            "arp cut before the target's last byte",
            arp_request(BENIGN_V4_A, lo4).build()[..arp_start + ArpEthIpv4Packet::LEN - 1].to_vec(),
            None,
        ),
        case(
            "rarp ethertype is not arp",
            {
                let mut frame = arp_request(lo4, lo4).build();
                frame[12..14].copy_from_slice(&[0x80, 0x35]);
                frame
            },
            None,
        ),
    ]
}
