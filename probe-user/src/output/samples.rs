//! Samples of matched frames, read from the programs' ring buffer: each becomes one
//! [`SampledFrame`], its captured bytes in a [`Bytes`] that every consumer (events, pcap, top
//! senders) shares without a copy, its headers decoded once.

use std::{
    fmt, io,
    net::IpAddr,
    task::Poll,
    time::{Duration, SystemTime},
};

use aya::maps::{MapData, RingBuf};
use bytes::Bytes;
use etherparse::{LaxNetSlice, LaxSlicedPacket, TransportSlice};
use probe_common::{Action, Framing, LoopbackMatch, Sample};
use tokio::io::{Interest, unix::AsyncFd};

/// One matched frame as the program sampled it.
#[derive(Clone, Debug)]
pub struct SampledFrame {
    /// Wall-clock time the program saw it.
    pub at: SystemTime,
    pub ifindex: u32,
    pub matched: LoopbackMatch,
    pub action: Action,
    pub framing: Framing,
    /// The frame's full length; `captured` holds at most its first 128 bytes.
    pub frame_len: u32,
    pub captured: Bytes,
    pub headers: Headers,
}

/// What the captured bytes say about who sent the frame, decoded as far as they go.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    /// `None` on layer-3 devices, whose frames start at the IP header.
    pub source_mac: Option<[u8; 6]>,
    pub destination_mac: Option<[u8; 6]>,
    /// VLAN ids, outer first.
    pub vlans: Vec<u16>,
    /// For ARP, the sender's and the target's protocol addresses.
    pub source_ip: Option<IpAddr>,
    pub destination_ip: Option<IpAddr>,
    /// An ARP packet's operation and hardware addresses.
    pub arp: Option<ArpHeader>,
    /// The IP protocol number (6 TCP, 17 UDP, …).
    pub protocol: Option<u8>,
    /// TCP and UDP only.
    pub source_port: Option<u16>,
    pub destination_port: Option<u16>,
    /// TCP only.
    pub tcp_flags: Option<TcpFlags>,
    /// The IP packet is a fragment (its transport header, if any, is not decoded).
    pub fragment: bool,
}

/// What an ARP packet (IPv4 over Ethernet) says beyond its protocol addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpHeader {
    /// 1 request, 2 reply, …
    pub operation: u16,
    pub sender_mac: [u8; 6],
    pub target_mac: [u8; 6],
}

impl ArpHeader {
    /// `request`, `reply`, or the operation's number.
    pub fn operation_name(&self) -> String {
        match self.operation {
            1 => "request".to_owned(),
            2 => "reply".to_owned(),
            other => other.to_string(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpFlags {
    pub fin: bool,
    pub syn: bool,
    pub rst: bool,
    pub psh: bool,
    pub ack: bool,
    pub urg: bool,
    pub ece: bool,
    pub cwr: bool,
}

impl fmt::Display for TcpFlags {
    /// As tcpdump writes them, in its order: `S`, `S.`, `F.`, `R`, `P.`, `FSRP.UEW`; `none`
    /// for none.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut written = false;
        for (set, letter) in [
            (self.fin, 'F'),
            (self.syn, 'S'),
            (self.rst, 'R'),
            (self.psh, 'P'),
            (self.ack, '.'),
            (self.urg, 'U'),
            (self.ece, 'E'),
            (self.cwr, 'W'),
        ] {
            if set {
                write!(f, "{letter}")?;
                written = true;
            }
        }
        if !written {
            f.write_str("none")?;
        }
        Ok(())
    }
}

impl Headers {
    /// Decodes what `frame` holds: Ethernet and VLAN tags (for [`Framing::Ethernet`]), IPv4,
    /// IPv6 or ARP, TCP or UDP. Truncated or malformed layers end the decoding there.
    pub fn decode(frame: &[u8], framing: Framing) -> Self {
        let packet = match framing {
            Framing::Ethernet => LaxSlicedPacket::from_ethernet(frame).ok(),
            Framing::Ip => LaxSlicedPacket::from_ip(frame).ok(),
        };
        let Some(packet) = packet else {
            return Self::default();
        };
        let mut headers = Self::default();
        if let Some(etherparse::LinkSlice::Ethernet2(ethernet)) = &packet.link {
            headers.source_mac = Some(ethernet.source());
            headers.destination_mac = Some(ethernet.destination());
        }
        headers.vlans = packet.vlan_ids().iter().map(|id| id.value()).collect();
        match &packet.net {
            Some(LaxNetSlice::Ipv4(ipv4)) => {
                headers.source_ip = Some(ipv4.header().source_addr().into());
                headers.destination_ip = Some(ipv4.header().destination_addr().into());
            }
            Some(LaxNetSlice::Ipv6(ipv6)) => {
                headers.source_ip = Some(ipv6.header().source_addr().into());
                headers.destination_ip = Some(ipv6.header().destination_addr().into());
            }
            Some(LaxNetSlice::Arp(arp)) => headers.decode_arp(arp),
            None => {}
        }
        headers.protocol = packet.ip_payload().map(|payload| payload.ip_number.0);
        headers.fragment = packet
            .ip_payload()
            .is_some_and(|payload| payload.fragmented);
        match &packet.transport {
            Some(TransportSlice::Tcp(tcp)) => {
                headers.source_port = Some(tcp.source_port());
                headers.destination_port = Some(tcp.destination_port());
                headers.tcp_flags = Some(TcpFlags {
                    fin: tcp.fin(),
                    syn: tcp.syn(),
                    rst: tcp.rst(),
                    psh: tcp.psh(),
                    ack: tcp.ack(),
                    urg: tcp.urg(),
                    ece: tcp.ece(),
                    cwr: tcp.cwr(),
                });
            }
            Some(TransportSlice::Udp(udp)) => {
                headers.source_port = Some(udp.source_port());
                headers.destination_port = Some(udp.destination_port());
            }
            _ => {}
        }
        headers
    }

    /// ARP for IPv4 over Ethernet, the only kind the classifier matches; others keep their
    /// addresses undecoded.
    fn decode_arp(&mut self, arp: &etherparse::ArpPacketSlice) {
        let (Ok(sender_ip), Ok(target_ip), Ok(sender_mac), Ok(target_mac)) = (
            <[u8; 4]>::try_from(arp.sender_protocol_addr()),
            <[u8; 4]>::try_from(arp.target_protocol_addr()),
            <[u8; 6]>::try_from(arp.sender_hw_addr()),
            <[u8; 6]>::try_from(arp.target_hw_addr()),
        ) else {
            return;
        };
        self.source_ip = Some(sender_ip.into());
        self.destination_ip = Some(target_ip.into());
        self.arp = Some(ArpHeader {
            operation: arp.operation().0,
            sender_mac,
            target_mac,
        });
    }

    /// The protocol's name (`tcp`, `udp`, `icmp`, `ipv6-icmp`, …), or its number.
    pub fn protocol_name(&self) -> Option<String> {
        if self.arp.is_some() {
            return Some("arp".to_owned());
        }
        let number = self.protocol?;
        Some(match etherparse::IpNumber(number).keyword_str() {
            Some(name) => name.to_ascii_lowercase(),
            None => number.to_string(),
        })
    }
}

pub use crate::net::mac_string;

impl SampledFrame {
    /// Decodes one ring buffer record; `None` for a record no program writes.
    pub fn from_record(record: &[u8], clock: &Clock) -> Option<Self> {
        if record.len() < size_of::<Sample>() {
            return None;
        }
        // SAFETY: the record holds a whole `Sample` (checked above), plain integers for which
        // any bit pattern is valid; the ring gives no alignment guarantee beyond 8, so it is
        // read unaligned.
        let sample = unsafe { record.as_ptr().cast::<Sample>().read_unaligned() };
        let (matched, action, framing) = sample.decode()?;
        let captured = match (sample.offloaded_vlan_tag(), framing) {
            // Put back where it was on the wire, after the MAC addresses.
            (Some(tag), Framing::Ethernet) if sample.captured().len() >= 12 => {
                let (macs, rest) = sample.captured().split_at(12);
                let mut frame = Vec::with_capacity(sample.captured().len() + tag.len());
                frame.extend_from_slice(macs);
                frame.extend_from_slice(&tag);
                frame.extend_from_slice(rest);
                Bytes::from(frame)
            }
            _ => Bytes::copy_from_slice(sample.captured()),
        };
        let headers = Headers::decode(&captured, framing);
        Some(Self {
            at: clock.wall_time(sample.timestamp_ns),
            ifindex: sample.ifindex,
            matched,
            action,
            framing,
            frame_len: sample.frame_len,
            captured,
            headers,
        })
    }
}

/// Turns the programs' `CLOCK_MONOTONIC` timestamps into wall-clock time.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Wall-clock time at monotonic 0.
    boot: SystemTime,
}

impl Clock {
    /// Reads both clocks now; call again to follow changes of the wall clock.
    pub fn now() -> Self {
        let mut monotonic = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: one valid timespec to fill.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut monotonic) };
        let since_boot = Duration::new(monotonic.tv_sec as u64, monotonic.tv_nsec as u32);
        Self {
            boot: SystemTime::now() - since_boot,
        }
    }

    pub fn wall_time(&self, monotonic_ns: u64) -> SystemTime {
        self.boot + Duration::from_nanos(monotonic_ns)
    }
}

/// The ring buffers, one per generation of the programs, read as samples arrive.
pub struct SampleRing {
    rings: Vec<AsyncFd<RingBuf<MapData>>>,
}

impl SampleRing {
    pub fn new(rings: Vec<RingBuf<MapData>>) -> io::Result<Self> {
        let mut this = Self { rings: Vec::new() };
        for ring in rings {
            this.add(ring)?;
        }
        Ok(this)
    }

    /// Reads `ring` too, from now on: that of a generation loaded since.
    pub fn add(&mut self, ring: RingBuf<MapData>) -> io::Result<()> {
        // SAFETY: the ring owns its map's fd, open as long as the ring lives, and the
        // `AsyncFd` owns the ring.
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }?;
        self.rings.push(ring);
        Ok(())
    }

    /// Waits for samples in any ring, then appends every one in the rings to `into`.
    pub async fn read(&mut self, into: &mut Vec<SampledFrame>) -> io::Result<()> {
        // Cleared before reading, not after: the kernel wakes a reader only when it had read
        // everything, so a wakeup for a sample that arrives while this reads must not be lost.
        std::future::poll_fn(|context| {
            let mut ready = false;
            for ring in &mut self.rings {
                match ring.poll_read_ready_mut(context) {
                    Poll::Ready(Ok(mut guard)) => {
                        guard.clear_ready();
                        ready = true;
                    }
                    Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                    Poll::Pending => {}
                }
            }
            if ready {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            }
        })
        .await?;
        self.drain(into);
        Ok(())
    }

    /// Takes whatever is in the rings now, without waiting.
    pub fn drain(&mut self, into: &mut Vec<SampledFrame>) {
        let clock = Clock::now();
        for ring in &mut self.rings {
            let ring = ring.get_mut();
            while let Some(record) = ring.next() {
                match SampledFrame::from_record(&record, &clock) {
                    Some(frame) => into.push(frame),
                    None => {
                        tracing::debug!("a sample record no program writes: {:?}", &record[..]);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_flags_read_as_tcpdump_writes_them() {
        let none = TcpFlags {
            fin: false,
            syn: false,
            rst: false,
            psh: false,
            ack: false,
            urg: false,
            ece: false,
            cwr: false,
        };
        let all = TcpFlags {
            fin: true,
            syn: true,
            rst: true,
            psh: true,
            ack: true,
            urg: true,
            ece: true,
            cwr: true,
        };
        assert_eq!(all.to_string(), "FSRP.UEW");
        assert_eq!(none.to_string(), "none");
        assert_eq!(TcpFlags { syn: true, ..none }.to_string(), "S");
        assert_eq!(
            TcpFlags {
                syn: true,
                ack: true,
                ..none
            }
            .to_string(),
            "S."
        );
        assert_eq!(
            TcpFlags {
                psh: true,
                ack: true,
                ..none
            }
            .to_string(),
            "P."
        );
    }

    #[test]
    fn headers_are_decoded_through_vlan_tags_to_the_ports() {
        let mut frame = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .double_vlan(
                etherparse::VlanId::try_new(10).expect("an id"),
                etherparse::VlanId::try_new(20).expect("an id"),
            )
            .ipv4([198, 18, 0, 1], [127, 0, 0, 1], 64)
            .tcp(40000, 6379, 1, 1024)
            .syn()
            .ack(7)
            .write(&mut frame, b"payload")
            .expect("build");
        let headers = Headers::decode(&frame, Framing::Ethernet);
        assert_eq!(headers.source_mac, Some([2, 0, 0, 0, 0, 1]));
        assert_eq!(headers.destination_mac, Some([2, 0, 0, 0, 0, 2]));
        assert_eq!(headers.vlans, [10, 20]);
        assert_eq!(headers.source_ip, Some([198, 18, 0, 1].into()));
        assert_eq!(headers.destination_ip, Some([127, 0, 0, 1].into()));
        assert_eq!(headers.protocol_name().as_deref(), Some("tcp"));
        assert_eq!(
            (headers.source_port, headers.destination_port),
            (Some(40000), Some(6379))
        );
        assert_eq!(
            headers.tcp_flags.map(|f| f.to_string()).as_deref(),
            Some("S.")
        );

        // Cut inside the TCP header: what is there is still decoded.
        let cut = Headers::decode(&frame[..14 + 8 + 20 + 4], Framing::Ethernet);
        assert_eq!(cut.destination_ip, Some([127, 0, 0, 1].into()));
        assert_eq!(cut.destination_port, None);
        // Garbage decodes to nothing rather than failing.
        assert_eq!(Headers::decode(&[0xff; 3], Framing::Ip), Headers::default());
    }

    #[test]
    fn arp_packets_give_their_operation_and_both_address_pairs() {
        let sender_mac = [2, 0, 0, 0, 0, 1];
        let frame = test_frames::arp_request([198, 18, 0, 1].into(), [127, 0, 0, 53].into())
            .macs(sender_mac, [0xff; 6])
            .vlan(test_frames::TPID_8021Q)
            .build();
        let headers = Headers::decode(&frame, Framing::Ethernet);
        assert_eq!(headers.source_mac, Some(sender_mac));
        assert_eq!(headers.vlans, [100]);
        assert_eq!(headers.source_ip, Some([198, 18, 0, 1].into()));
        assert_eq!(headers.destination_ip, Some([127, 0, 0, 53].into()));
        assert_eq!(headers.protocol_name().as_deref(), Some("arp"));
        let arp = headers.arp.expect("an ARP header");
        assert_eq!(arp.operation_name(), "request");
        assert_eq!((arp.sender_mac, arp.target_mac), (sender_mac, [0; 6]));
        assert_eq!(headers.source_port, None);

        let reply = test_frames::arp_reply([127, 0, 0, 1].into(), [198, 18, 0, 1].into()).build();
        let arp = Headers::decode(&reply, Framing::Ethernet).arp.expect("ARP");
        assert_eq!(arp.operation_name(), "reply");
        let other = test_frames::arp(
            etherparse::ArpOperation(8),
            [198, 18, 0, 1].into(),
            [127, 0, 0, 1].into(),
        )
        .build();
        let arp = Headers::decode(&other, Framing::Ethernet).arp.expect("ARP");
        assert_eq!(arp.operation_name(), "8");
        // Cut inside the target's address: no addresses rather than wrong ones.
        let cut = Headers::decode(&reply[..14 + 26], Framing::Ethernet);
        assert_eq!((cut.arp, cut.source_ip), (None, None));
    }

    #[test]
    fn mac_addresses_are_written_in_lowercase_hex() {
        assert_eq!(mac_string([2, 0, 0, 0, 0xab, 1]), "02:00:00:00:ab:01");
    }
}
