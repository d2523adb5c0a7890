//! Test hosts for localnet-probe's integration tests and benchmark: network namespaces joined by
//! a veth pair, raw-frame senders, sockets inside a namespace, and the `localnet-probe` binary run
//! in one. Everything is removed on drop, also when a test fails. Traffic stays on the veth pair
//! (198.18.0.0/15, fd00::/8).

use std::{
    fs::File,
    io::{BufRead as _, BufReader, Read, Write as _},
    net::{SocketAddr, TcpStream, UdpSocket},
    os::fd::AsRawFd as _,
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
        mpsc::{self, Receiver, RecvTimeoutError},
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

pub const SENDER_MAC: [u8; 6] = [0x02, 0x4c, 0x50, 0, 0, 0x01];
pub const RECEIVER_MAC: [u8; 6] = [0x02, 0x4c, 0x50, 0, 0, 0x02];
pub const SENDER_V4: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 18, 0, 1);
pub const RECEIVER_V4: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 18, 0, 2);
pub const SENDER_IF: &str = "vtx";
pub const RECEIVER_IF: &str = "vrx";

/// Runs `command` to its end; panics with its status and output unless it succeeds.
pub fn succeeded(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?} (cargo xtask test installs it): {e}"));
    assert!(
        output.status.success(),
        "{command:?}: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The ifindex of `interface` in the calling thread's network namespace.
pub fn ifindex(interface: &str) -> u32 {
    let name = std::ffi::CString::new(interface).expect("no NUL in an interface name");
    // SAFETY: valid C string.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => panic!("no interface {interface}"),
        ifindex => ifindex,
    }
}

/// `struct xdp_md` for BPF_PROG_TEST_RUN: a frame of `len` bytes arriving on `ifindex` (which
/// must exist in the calling thread's namespace).
pub fn xdp_md(len: usize, ifindex: u32) -> [u8; 24] {
    let fields = [0, len as u32, 0, ifindex, 0, 0];
    let mut md = [0; 24];
    for (chunk, field) in md.chunks_exact_mut(4).zip(fields) {
        chunk.copy_from_slice(&field.to_ne_bytes());
    }
    md
}

pub fn ip(args: &[&str]) {
    let output = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2)");
    assert!(
        output.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn unique_name(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "lnp-{tag}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// `setpriv` arguments that leave the probe exactly `caps` (e.g. `+bpf,+net_admin`), as the
/// unprivileged user nobody.
pub fn only_caps(caps: &str) -> Vec<String> {
    [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        &format!("--inh-caps=-all,{caps}"),
        &format!("--ambient-caps=-all,{caps}"),
        &format!("--bounding-set=-all,{caps}"),
    ]
    .map(str::to_owned)
    .to_vec()
}

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Self {
        let name = unique_name(tag);
        ip(&["netns", "add", &name]);
        let netns = Self { name };
        netns.ip(&["link", "set", "lo", "up"]);
        netns
    }

    /// `ip -n <netns> args…`
    pub fn ip(&self, args: &[&str]) {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        ip(&full);
    }

    /// Sets a sysctl of this namespace, `key` as a path under /proc/sys.
    pub fn sysctl(&self, key: &str, value: &str) {
        let path = format!("/proc/sys/{key}");
        self.enter(|| {
            std::fs::write(&path, value).unwrap_or_else(|e| panic!("write {path}: {e}"));
        });
    }

    /// Runs `f` on a thread that has joined this namespace; sockets it opens live there.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        thread::scope(|scope| {
            scope
                .spawn(|| {
                    let netns = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                    // SAFETY: plain syscall on a valid fd; it only moves this thread.
                    let rc = unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) };
                    assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
                    f()
                })
                .join()
                .expect("namespace thread panicked")
        })
    }

    /// Waits (at most 10 s) until `dev` is operationally up: until the kernel's link watcher
    /// has seen the carrier, which a loaded machine may take a while to get to, a device's
    /// queue discards what is sent through it.
    pub fn wait_operational(&self, dev: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let output = Command::new("ip")
                .args(["-n", &self.name, "-br", "link", "show", "dev", dev])
                .output()
                .expect("run ip");
            let state = String::from_utf8_lossy(&output.stdout)
                .split_whitespace()
                .nth(1)
                .map(str::to_owned);
            if state.as_deref() == Some("UP") {
                return;
            }
            assert!(Instant::now() < deadline, "{dev} is not up: {state:?}");
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits at most `timeout` for an XDP program on `dev` (a probe started in the background
    /// has attached).
    pub fn wait_for_xdp(&self, dev: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.has_xdp(dev) {
            assert!(
                Instant::now() < deadline,
                "nothing attached to {dev} within {timeout:?}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Where a standing filter of this namespace is pinned (`localnet-probe run --pin`).
    pub fn pin_dir(&self) -> std::path::PathBuf {
        use std::os::unix::fs::MetadataExt as _;
        let inode = std::fs::metadata(format!("/run/netns/{}", self.name))
            .expect("the namespace's file")
            .ino();
        std::path::PathBuf::from(format!("/sys/fs/bpf/localnet-probe/net-{inode}"))
    }

    /// Runs `program` in this namespace and the host's mount namespace (with `nsenter`, not
    /// `ip netns exec`, whose mount namespace takes a BPF file system mounted in it along
    /// when the command ends).
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/run/netns/{}", self.name))
            .arg(program);
        command
    }

    /// The ids of the programs attached to `dev`'s tcx hook (ingress, or egress), in the order
    /// they run, from `BPF_PROG_QUERY` (bpftool here predates tcx); none on a kernel without
    /// tcx, which refuses the attach type.
    pub fn tcx_programs(&self, dev: &str, egress: bool) -> Vec<u32> {
        const BPF_PROG_QUERY: libc::c_long = 16;
        const BPF_TCX_INGRESS: u32 = 46;
        const BPF_TCX_EGRESS: u32 = 47;
        let attach_type = if egress {
            BPF_TCX_EGRESS
        } else {
            BPF_TCX_INGRESS
        };
        // The ifindex is looked up in the calling thread's namespace.
        self.enter(|| {
            let mut ids = [0_u32; 64];
            let mut attr = [0_u8; 128];
            attr[0..4].copy_from_slice(&ifindex(dev).to_ne_bytes());
            attr[4..8].copy_from_slice(&attach_type.to_ne_bytes());
            attr[16..24].copy_from_slice(&(ids.as_mut_ptr() as u64).to_ne_bytes());
            attr[24..28].copy_from_slice(&(ids.len() as u32).to_ne_bytes());
            // SAFETY: `attr` is a zeroed `union bpf_attr` for BPF_PROG_QUERY, pointing at
            // `ids`, whose length it gives, alive for the call.
            let result = unsafe {
                libc::syscall(
                    libc::SYS_bpf,
                    BPF_PROG_QUERY,
                    attr.as_mut_ptr(),
                    attr.len() as u32,
                )
            };
            let error = std::io::Error::last_os_error();
            if result != 0 && error.raw_os_error() == Some(libc::EINVAL) {
                return Vec::new();
            }
            assert_eq!(result, 0, "BPF_PROG_QUERY on {dev}: {error}");
            let count = u32::from_ne_bytes(attr[24..28].try_into().expect("four bytes"));
            ids[..count as usize].to_vec()
        })
    }

    /// `tc -n <netns> args…`
    pub fn tc(&self, args: &[&str]) {
        let output = Command::new("tc")
            .args(["-n", &self.name])
            .args(args)
            .output()
            .expect("run tc");
        assert!(
            output.status.success(),
            "tc {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The filters on `dev`'s clsact qdisc (at ingress, or egress), in the order they run, from
    /// `tc -j filter show`: each one's handle and the id of its eBPF program (none for classic
    /// BPF or another kind). None without the qdisc.
    pub fn clsact_filters(&self, dev: &str, egress: bool) -> Vec<(u32, Option<u32>)> {
        let output = Command::new("tc")
            .args(["-n", &self.name, "-j", "filter", "show", "dev", dev])
            .arg(if egress { "egress" } else { "ingress" })
            .output()
            .expect("run tc");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        if output.stdout.iter().all(u8::is_ascii_whitespace) {
            return Vec::new();
        }
        let filters: Value = serde_json::from_slice(&output.stdout).expect("tc -j writes JSON");
        filters
            .as_array()
            .expect("a list of filters")
            .iter()
            // The entry of each priority's chain carries no options.
            .filter_map(|filter| {
                let options = filter.get("options")?;
                let handle = options["handle"].as_str().expect("a handle");
                let handle = u32::from_str_radix(handle.trim_start_matches("0x"), 16)
                    .expect("a hexadecimal handle");
                Some((handle, options["prog"]["id"].as_u64().map(|id| id as u32)))
            })
            .collect()
    }

    /// Whether `dev` has a clsact qdisc.
    pub fn has_clsact(&self, dev: &str) -> bool {
        let output = Command::new("tc")
            .args(["-n", &self.name, "qdisc", "show", "dev", dev])
            .output()
            .expect("run tc");
        String::from_utf8_lossy(&output.stdout).contains("qdisc clsact")
    }

    /// `program args…` run to its end in this namespace and the host's mount namespace (see
    /// [`Netns::command`]).
    pub fn output(&self, program: &str, args: &[&str]) -> std::process::Output {
        self.command(program)
            .args(args)
            .output()
            .unwrap_or_else(|error| panic!("run {program}: {error}"))
    }

    /// Whether `dev` carries an XDP program, per `ip link`.
    pub fn has_xdp(&self, dev: &str) -> bool {
        let output = Command::new("ip")
            .args(["-n", &self.name, "-d", "link", "show", "dev", dev])
            .output()
            .expect("run ip");
        assert!(output.status.success());
        String::from_utf8_lossy(&output.stdout).contains("prog/xdp")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // A standing filter a test left: its maps would outlive the namespace.
        let _ = std::fs::remove_dir_all(self.pin_dir());
        let _ = std::fs::remove_dir("/sys/fs/bpf/localnet-probe");
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Two hosts: `sender` with `vtx` (198.18.0.1, fd00::1) and `receiver` with `vrx` (198.18.0.2,
/// fd00::2), joined by a veth pair.
pub struct Link {
    pub sender: Netns,
    pub receiver: Netns,
}

impl Link {
    pub fn new(tag: &str) -> Self {
        let sender = Netns::new(&format!("{tag}-tx"));
        let receiver = Netns::new(&format!("{tag}-rx"));
        let mac = |mac: [u8; 6]| {
            mac.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        };
        sender.ip(&[
            "link",
            "add",
            SENDER_IF,
            "address",
            &mac(SENDER_MAC),
            "type",
            "veth",
            "peer",
            "name",
            RECEIVER_IF,
            "address",
            &mac(RECEIVER_MAC),
            "netns",
            &receiver.name,
        ]);
        sender.ip(&["addr", "add", "198.18.0.1/24", "dev", SENDER_IF]);
        sender.ip(&["addr", "add", "fd00::1/64", "dev", SENDER_IF, "nodad"]);
        receiver.ip(&["addr", "add", "198.18.0.2/24", "dev", RECEIVER_IF]);
        receiver.ip(&["addr", "add", "fd00::2/64", "dev", RECEIVER_IF, "nodad"]);
        // A queue on the sender lets veth push back instead of dropping when the receiver's ring
        // is full, so every frame sent is received.
        sender.ip(&["link", "set", SENDER_IF, "txqueuelen", "10000"]);
        Command::new("tc")
            .args([
                "-n",
                &sender.name,
                "qdisc",
                "replace",
                "dev",
                SENDER_IF,
                "root",
                "pfifo",
                "limit",
                "10000",
            ])
            .status()
            .expect("run tc");
        sender.ip(&["link", "set", SENDER_IF, "up"]);
        receiver.ip(&["link", "set", RECEIVER_IF, "up"]);
        sender.wait_operational(SENDER_IF);
        receiver.wait_operational(RECEIVER_IF);
        Self { sender, receiver }
    }

    /// An AF_PACKET socket on the sender's end of the pair.
    pub fn raw_sender(&self) -> RawSender {
        self.sender.enter(|| RawSender::open(SENDER_IF))
    }

    /// A receiver of the frames of `ethertype` arriving at the sender's end of the pair.
    pub fn sender_receiver(&self, ethertype: u16) -> FrameReceiver {
        self.sender
            .enter(|| FrameReceiver::open(SENDER_IF, ethertype))
    }

    /// A sender that never gets more than [`PACED_WINDOW`] frames ahead of what the receiving
    /// end has taken, for tests that count every frame sent.
    pub fn paced_sender(&self) -> PacedSender {
        let mut received = DeviceCounters::open(&self.receiver, RECEIVER_IF);
        let base = received.read().rx_packets;
        PacedSender {
            raw: self.raw_sender(),
            received,
            dropped: DeviceCounters::open(&self.sender, SENDER_IF),
            base,
            sent: 0,
        }
    }

    pub fn receiver_udp(&self, address: SocketAddr) -> UdpSocket {
        self.receiver.enter(|| {
            let socket = UdpSocket::bind(address).unwrap_or_else(|e| panic!("bind {address}: {e}"));
            socket
                .set_read_timeout(Some(Duration::from_millis(50)))
                .expect("set timeout");
            force_receive_buffer(&socket, UDP_RECEIVE_BUFFER);
            socket
        })
    }
}

/// Room for the datagrams a test sends before it reads them. Linux 6.1's veth, with an XDP
/// program attached natively, hands each frame up in a page of its own: 50 of them overflow the
/// default receive buffer (`net.core.rmem_default`) by one.
const UDP_RECEIVE_BUFFER: libc::c_int = 4 << 20;

/// Sets `socket`'s receive buffer to `bytes`, above `net.core.rmem_max` (the tests run as root).
fn force_receive_buffer(socket: &UdpSocket, bytes: libc::c_int) {
    use std::os::fd::AsRawFd as _;
    // SAFETY: an open socket, and a value of the size given.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const bytes).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(
        result,
        0,
        "SO_RCVBUFFORCE: {}",
        std::io::Error::last_os_error()
    );
}

/// Sends whole Ethernet frames out of one interface.
pub struct RawSender {
    fd: std::os::fd::OwnedFd,
    ifindex: i32,
}

impl RawSender {
    pub fn open(interface: &str) -> Self {
        use std::os::fd::FromRawFd as _;
        // SAFETY: plain syscalls; the fd is owned right away.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        assert!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        Self {
            fd,
            ifindex: ifindex(interface) as i32,
        }
    }

    /// Sends `frame`, waiting out a full queue; panics if it cannot within a second.
    pub fn send(&self, frame: &[u8]) {
        // SAFETY: sockaddr_ll is plain data.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        address.sll_family = libc::AF_PACKET as u16;
        address.sll_ifindex = self.ifindex;
        address.sll_halen = 6;
        address.sll_addr[..6].copy_from_slice(&frame[..6]);
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            // SAFETY: buffer and address are valid for the lengths given.
            let sent = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&raw const address).cast(),
                    size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            if sent == frame.len() as isize {
                return;
            }
            let error = std::io::Error::last_os_error();
            let retry = matches!(error.raw_os_error(), Some(libc::ENOBUFS | libc::EAGAIN));
            assert!(retry && Instant::now() < deadline, "sendto: {error}");
            thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Receives the frames of one ethertype that arrive at an interface (not those leaving it).
pub struct FrameReceiver {
    fd: std::os::fd::OwnedFd,
}

impl FrameReceiver {
    /// An AF_PACKET socket bound to `interface` for frames of `ethertype`; call inside the
    /// interface's namespace ([`Netns::enter`]).
    pub fn open(interface: &str, ethertype: u16) -> Self {
        use std::os::fd::FromRawFd as _;
        let protocol = ethertype.to_be();
        // SAFETY: plain syscalls; the fd is owned right away.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(protocol),
            )
        };
        assert!(
            fd >= 0,
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        );
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_ll is plain data.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        address.sll_family = libc::AF_PACKET as u16;
        address.sll_protocol = protocol;
        address.sll_ifindex = ifindex(interface) as i32;
        // SAFETY: the address is valid for the length given.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const address).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
        Self { fd }
    }

    /// The next frame that arrives within `timeout`.
    pub fn next(&self, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let mut buffer = vec![0; 2048];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut poll = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let ready = unsafe { libc::poll(&raw mut poll, 1, left.as_millis() as i32) };
            if ready <= 0 {
                return None;
            }
            // SAFETY: sockaddr_ll is plain data.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut from_len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: buffer and address are valid for the lengths given.
            let received = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buffer.as_mut_ptr().cast(),
                    buffer.len(),
                    libc::MSG_DONTWAIT,
                    (&raw mut from).cast(),
                    &raw mut from_len,
                )
            };
            if received < 0 {
                continue;
            }
            if from.sll_pkttype != libc::PACKET_OUTGOING {
                buffer.truncate(received as usize);
                return Some(buffer);
            }
        }
    }

    /// Every frame that arrives until none has for `quiet`.
    pub fn drain(&self, quiet: Duration) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| self.next(quiet)).collect()
    }
}

/// Frames a [`PacedSender`] lets be in flight: well inside the receiving veth's ring (256 frames).
pub const PACED_WINDOW: u64 = 128;

/// Sends frames over a [`Link`] so that every one reaches the receiver. A veth with an XDP
/// program receives through a 256-frame ring that its NAPI poll empties; where the poll runs late
/// (ksoftirqd on a loaded or emulated machine) and the kernel has no back-pressure for it (6.1
/// has none: it drops what overflows, as the sender's tx_dropped says), a fixed pause between
/// frames is a guess that a slower machine loses. This waits for the receiver's own count.
pub struct PacedSender {
    raw: RawSender,
    received: DeviceCounters,
    dropped: DeviceCounters,
    base: u64,
    sent: u64,
}

impl PacedSender {
    /// Sends `frame` once fewer than [`PACED_WINDOW`] frames are in flight; panics if the
    /// receiver takes none for 10 s or the sender's veth dropped one.
    pub fn send(&mut self, frame: &[u8]) {
        if self.sent.is_multiple_of(PACED_WINDOW / 2) {
            self.wait_until_in_flight(PACED_WINDOW / 2);
        }
        self.raw.send(frame);
        self.sent += 1;
    }

    /// Waits until the receiver has taken every frame sent.
    pub fn finish(mut self) {
        self.wait_until_in_flight(0);
    }

    fn wait_until_in_flight(&mut self, most: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let taken = self.received.read().rx_packets.saturating_sub(self.base);
            // Other frames (neighbour discovery) count too: never fewer than sent.
            if self.sent.saturating_sub(taken) <= most {
                return;
            }
            let dropped = self.dropped.read().tx_dropped;
            assert!(
                dropped == 0 && Instant::now() < deadline,
                "{taken} of {} frames received, {dropped} dropped by the sending veth",
                self.sent
            );
            thread::sleep(Duration::from_micros(200));
        }
    }
}

/// A device's counters as /proc/net/dev of its namespace shows them.
struct DeviceStatistics {
    rx_packets: u64,
    tx_dropped: u64,
}

/// /proc/net/dev of one namespace, opened there and read again at each call.
struct DeviceCounters {
    file: File,
    dev: String,
}

impl DeviceCounters {
    fn open(netns: &Netns, dev: &str) -> Self {
        // A /proc/net file shows the namespace it was opened in, whoever reads it later.
        let file = netns.enter(|| File::open("/proc/thread-self/net/dev").expect("open net/dev"));
        Self {
            file,
            dev: dev.to_owned(),
        }
    }

    fn read(&mut self) -> DeviceStatistics {
        use std::io::Seek as _;
        let mut text = String::new();
        self.file.rewind().expect("rewind net/dev");
        self.file.read_to_string(&mut text).expect("read net/dev");
        text.lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(name, _)| name.trim() == self.dev)
            .map(|(_, fields)| {
                let fields: Vec<u64> = fields
                    .split_whitespace()
                    .map(|field| field.parse().expect("a counter"))
                    .collect();
                // rx: bytes packets errs drop fifo frame compressed multicast; tx: bytes packets
                // errs drop …
                DeviceStatistics {
                    rx_packets: fields[1],
                    tx_dropped: fields[11],
                }
            })
            .unwrap_or_else(|| panic!("{} not in net/dev:\n{text}", self.dev))
    }
}

/// A tun device (IFF_TUN, no packet information): packets written to it arrive on the device
/// as if received, starting at their IP header. Removed when dropped.
pub struct Tun {
    file: File,
}

impl Tun {
    /// Creates `name` in `netns`, up, with `address` (CIDR).
    pub fn new(netns: &Netns, name: &str, address: &str) -> Self {
        const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
        const IFF_TUN: libc::c_short = 0x0001;
        const IFF_NO_PI: libc::c_short = 0x1000;
        let file = netns.enter(|| {
            let file = File::options()
                .read(true)
                .write(true)
                .open("/dev/net/tun")
                .expect("open /dev/net/tun");
            // SAFETY: ifreq is plain data.
            let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
            for (slot, byte) in request.ifr_name.iter_mut().zip(name.bytes()) {
                *slot = byte as libc::c_char;
            }
            request.ifr_ifru.ifru_flags = IFF_TUN | IFF_NO_PI;
            // SAFETY: TUNSETIFF reads an ifreq, valid for the call.
            let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &raw mut request) };
            assert_eq!(rc, 0, "TUNSETIFF: {}", std::io::Error::last_os_error());
            file
        });
        netns.ip(&["addr", "add", address, "dev", name]);
        netns.ip(&["link", "set", name, "up"]);
        Self { file }
    }

    /// Hands `packet` (from its IP header on) to the kernel as received on the device.
    pub fn send(&self, packet: &[u8]) {
        use std::io::Write as _;
        (&self.file)
            .write_all(packet)
            .expect("write to the tun device");
    }
}

/// Another tool's XDP program on an interface: two instructions that pass every frame, attached
/// in generic mode through a BPF link this process holds. Dropping it closes the link, which
/// detaches the program once no child process started meanwhile still holds a copy of the
/// descriptor (they close at exec): wait for [`Netns::has_xdp`] to say so.
pub struct ForeignXdp {
    _program: std::os::fd::OwnedFd,
    _link: std::os::fd::OwnedFd,
}

impl ForeignXdp {
    /// The program's name, as the kernel shows it.
    pub const NAME: &str = "foreign_pass";

    pub fn attach(netns: &Netns, interface: &str) -> Self {
        const BPF_PROG_TYPE_XDP: u32 = 6;
        const BPF_XDP: u32 = 37;
        const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
        const XDP_PASS: u32 = 2;
        let (program, link) = foreign_program(
            netns,
            interface,
            (BPF_PROG_TYPE_XDP, Self::NAME, XDP_PASS),
            (BPF_XDP, XDP_FLAGS_SKB_MODE),
        );
        Self {
            _program: program,
            _link: link,
        }
    }
}

/// Another tool's tcx ingress program on an interface, last in its chain (or first): it returns
/// `TCX_PASS`, which ends the chain, as Cilium's programs do; held like [`ForeignXdp`].
pub struct ForeignTcx {
    pub id: u32,
    _program: std::os::fd::OwnedFd,
    _link: std::os::fd::OwnedFd,
}

impl ForeignTcx {
    pub fn attach(netns: &Netns, interface: &str) -> Self {
        Self::attach_at(netns, interface, 0)
    }

    /// Attached first in the chain, before any program there.
    pub fn attach_first(netns: &Netns, interface: &str) -> Self {
        const BPF_F_BEFORE: u32 = 1 << 3;
        Self::attach_at(netns, interface, BPF_F_BEFORE)
    }

    fn attach_at(netns: &Netns, interface: &str, flags: u32) -> Self {
        const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
        const BPF_TCX_INGRESS: u32 = 46;
        const TCX_PASS: u32 = 0;
        let before = netns.tcx_programs(interface, false);
        let (program, link) = foreign_program(
            netns,
            interface,
            (BPF_PROG_TYPE_SCHED_CLS, "foreign_tcx", TCX_PASS),
            (BPF_TCX_INGRESS, flags),
        );
        let id = netns
            .tcx_programs(interface, false)
            .into_iter()
            .find(|id| !before.contains(id))
            .expect("the program just attached");
        Self {
            id,
            _program: program,
            _link: link,
        }
    }
}

/// Another tool's filter on an interface's clsact qdisc (added if missing) at ingress: classic
/// BPF that matches every frame and, with no action, ends the chain (`TC_ACT_OK`), as a
/// filter that passes frames to the stack does. Left to the namespace to remove.
pub fn foreign_filter(netns: &Netns, interface: &str, priority: u16, handle: u32) {
    if !netns.has_clsact(interface) {
        netns.tc(&["qdisc", "add", "dev", interface, "clsact"]);
    }
    netns.tc(&[
        "filter",
        "add",
        "dev",
        interface,
        "ingress",
        "prio",
        &priority.to_string(),
        "handle",
        &format!("{handle:#x}"),
        "bpf",
        "bytecode",
        "1,6 0 0 4294967295,",
    ]);
}

/// Loads a program of `kind` (program type, name) that returns `verdict`, and attaches it to
/// `interface` in `netns` with a BPF link of `attach` (attach type, flags): the program's and
/// the link's descriptors.
fn foreign_program(
    netns: &Netns,
    interface: &str,
    (program_type, name, verdict): (u32, &str, u32),
    (attach_type, flags): (u32, u32),
) -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_LINK_CREATE: libc::c_long = 28;
    // r0 = verdict; exit.
    let program: [u64; 2] = [
        0x0000_0000_0000_00b7 | (u64::from(verdict) << 32),
        0x0000_0000_0000_0095,
    ];
    let bpf = |command: libc::c_long, attr: &mut [u8; 128]| {
        use std::os::fd::FromRawFd as _;
        // SAFETY: `attr` is a zeroed `union bpf_attr` of the size passed, filled in for
        // `command`; the fd returned (close-on-exec) is owned right away.
        let fd =
            unsafe { libc::syscall(libc::SYS_bpf, command, attr.as_mut_ptr(), attr.len() as u32) };
        assert!(
            fd >= 0,
            "bpf command {command}: {}",
            std::io::Error::last_os_error()
        );
        unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) }
    };
    let put = |attr: &mut [u8; 128], offset: usize, bytes: &[u8]| {
        attr[offset..offset + bytes.len()].copy_from_slice(bytes);
    };
    let license = c"GPL";
    let mut load = [0; 128];
    put(&mut load, 0, &program_type.to_ne_bytes());
    put(&mut load, 4, &(program.len() as u32).to_ne_bytes());
    put(&mut load, 8, &(program.as_ptr() as u64).to_ne_bytes());
    put(&mut load, 16, &(license.as_ptr() as u64).to_ne_bytes());
    put(&mut load, 48, name.as_bytes());
    put(&mut load, 68, &attach_type.to_ne_bytes());
    let program = bpf(BPF_PROG_LOAD, &mut load);
    let mut create = [0; 128];
    put(&mut create, 0, &(program.as_raw_fd() as u32).to_ne_bytes());
    put(&mut create, 8, &attach_type.to_ne_bytes());
    put(&mut create, 12, &flags.to_ne_bytes());
    // The ifindex is looked up in the calling thread's namespace.
    let link = netns.enter(|| {
        put(&mut create, 4, &ifindex(interface).to_ne_bytes());
        bpf(BPF_LINK_CREATE, &mut create)
    });
    (program, link)
}

/// How long datagrams a test sent may take to arrive, on a loaded machine.
pub const DELIVERY_DEADLINE: Duration = Duration::from_secs(10);

/// Datagrams arriving on `socket` (whose read timeout is short): read until `expected` have
/// arrived or [`DELIVERY_DEADLINE`] has passed, then until none arrives for `quiet`, so that one
/// beyond `expected` is seen too. Returns how many arrived, for the caller to compare with
/// `expected`: a wait for an exact count rather than for silence, which a busy machine breaks.
pub fn receive(socket: &UdpSocket, expected: usize, quiet: Duration) -> usize {
    let mut buffer = [0; 2048];
    let mut received = 0;
    let deadline = Instant::now() + DELIVERY_DEADLINE;
    while received < expected && Instant::now() < deadline {
        if socket.recv(&mut buffer).is_ok() {
            received += 1;
        }
    }
    let mut last = Instant::now();
    while last.elapsed() < quiet {
        if socket.recv(&mut buffer).is_ok() {
            received += 1;
            last = Instant::now();
        }
    }
    received
}

/// `localnet-probe run --json` running in a namespace; killed on drop if still running.
pub struct ProbeProcess {
    child: Mutex<Child>,
    reports: Receiver<Value>,
    stderr: Arc<Mutex<String>>,
}

impl ProbeProcess {
    /// Starts `binary run --json` in `netns` with `args`, which may set `--interval` (0.1 s
    /// otherwise).
    pub fn start(binary: &str, netns: &Netns, args: &[&str]) -> Self {
        Self::start_wrapped(&[], binary, netns, args)
    }

    /// Like [`ProbeProcess::start`], with `wrapper` (e.g. `setpriv …`) running the binary.
    pub fn start_wrapped(wrapper: &[&str], binary: &str, netns: &Netns, args: &[&str]) -> Self {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &netns.name])
            .args(wrapper)
            .arg(binary);
        Self::spawn(command, args)
    }

    /// `binary run --json --pin args…` in `netns` and the host's mount namespace, where its
    /// pins outlive it (see [`Netns::command`]).
    pub fn start_pinned(binary: &str, netns: &Netns, args: &[&str]) -> Self {
        let args: Vec<&str> = std::iter::once("--pin")
            .chain(args.iter().copied())
            .collect();
        Self::spawn(netns.command(binary), &args)
    }

    /// `command run --json args…`: `command` runs the probe's binary with what follows.
    fn spawn(mut command: Command, args: &[&str]) -> Self {
        let interval: &[&str] = if args.contains(&"--interval") {
            &[]
        } else {
            &["--interval", "0.1"]
        };
        let mut child = command
            .args(["run", "--json"])
            .args(interval)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start localnet-probe");
        let (sender, reports) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped");
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let report: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
                if sender.send(report).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("piped");
        let sink = Arc::clone(&stderr);
        thread::spawn(move || {
            let mut chunk = [0; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        });
        Self {
            child: Mutex::new(child),
            reports,
            stderr,
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Whether the probe still runs, or how it exited, for a test that gives up on it.
    fn state(&self) -> String {
        let mut child = self.child.lock().unwrap();
        // The exit may lag the closed stdout that ended the reports by a moment.
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return format!("exited: {status}"),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                Ok(None) => return format!("still running (pid {})", child.id()),
                Err(error) => return format!("cannot be waited for: {error}"),
            }
        }
    }

    /// Waits until stderr says `text` (logs are written by a thread of their own, so they may
    /// come after the reports on stdout); its stderr then.
    pub fn wait_until_said(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let said = self.stderr();
            if said.contains(text) {
                return said;
            }
            assert!(
                Instant::now() < deadline,
                "not said: {text}\nlocalnet-probe {}; stderr:\n{said}",
                self.state()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The next report, if one comes within `timeout`: `Timeout` if none does, `Disconnected`
    /// once the probe has exited (its [`ProbeProcess::stderr`] says why). For callers that go on
    /// either way; [`ProbeProcess::wait_for`] panics instead.
    pub fn next_report(&self, timeout: Duration) -> Result<Value, RecvTimeoutError> {
        self.reports.recv_timeout(timeout)
    }

    /// The first report that satisfies `done`, within `timeout`.
    pub fn wait_for(&self, timeout: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_report(left) {
                Ok(report) if done(&report) => return report,
                Ok(report) => last = Some(report),
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no such report within {timeout:?}; the last: {}; localnet-probe {}; \
                         stderr: {}",
                        last.map_or_else(|| "none".to_owned(), |report| report.to_string()),
                        self.state(),
                        self.stderr()
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "localnet-probe stopped reporting: {}; stderr: {}",
                        self.state(),
                        self.stderr()
                    )
                }
            }
        }
    }

    /// Waits until the probe is attached and reporting.
    pub fn wait_ready(&self) -> Value {
        self.wait_for(Duration::from_secs(30), |_| true)
    }

    pub fn pid(&self) -> i32 {
        self.child.lock().unwrap().id() as i32
    }

    /// Waits at most `timeout` for the probe to exit by itself (`--duration`); returns the
    /// status and the last report.
    pub fn wait_exit(mut self, timeout: Duration) -> (ExitStatus, Option<Value>) {
        let status = wait_exit(self.child.get_mut().unwrap(), timeout);
        let last = self.reports.iter().last();
        (status, last)
    }

    /// Sends `signal` and waits for the exit; returns the status and the last report.
    pub fn stop(mut self, signal: i32) -> (ExitStatus, Option<Value>) {
        // SAFETY: signals the child this test started, by its pid.
        unsafe { libc::kill(self.pid(), signal) };
        let status = wait_exit(self.child.get_mut().unwrap(), Duration::from_secs(20));
        let last = self.reports.iter().last();
        (status, last)
    }
}

impl Drop for ProbeProcess {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap();
        if matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A child process this test started, killed (by its pid) if still running when dropped.
pub struct KillOnDrop(pub Child);

impl KillOnDrop {
    /// Sends SIGTERM and waits at most `timeout` for the exit.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        // SAFETY: signals the child this test started, by its pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        wait_exit(&mut self.0, timeout)
    }

    /// All the child's piped stdout, once it has exited.
    pub fn stdout(&mut self) -> String {
        read_pipe(self.0.stdout.take())
    }

    /// All the child's piped stderr, once it has exited.
    pub fn stderr(&mut self) -> String {
        read_pipe(self.0.stderr.take())
    }

    /// For a test that gives up waiting on the child: its exit status (killed first if it still
    /// runs) and its stderr where that is piped.
    pub fn last_words(&mut self) -> String {
        let status = match self.0.try_wait() {
            Ok(Some(status)) => format!("exited: {status}"),
            _ => {
                let _ = self.0.kill();
                let status = self.0.wait().expect("wait");
                format!("still running, killed: {status}")
            }
        };
        match self.0.stderr.take() {
            Some(stderr) => format!("{status}; stderr: {}", read_pipe(Some(stderr))),
            None => status,
        }
    }
}

fn read_pipe(pipe: Option<impl Read>) -> String {
    let mut text = String::new();
    pipe.expect("piped")
        .read_to_string(&mut text)
        .expect("read the pipe");
    text
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

pub fn wait_exit(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "process {} did not exit",
            child.id()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Where `cargo xtask test` has tests write what they did not run, so its totals count them as
/// skipped rather than passed: the harness itself only knows a test returned.
pub const SKIPPED_LOG: &str = "LOCALNET_PROBE_SKIPPED_LOG";

/// Says that `test` did not run, and why: on stderr, and as a line in the file named by
/// [`SKIPPED_LOG`] when it is set.
pub fn skipped(test: &str, why: &str) {
    eprintln!("skipped: {test}: {why}");
    if let Some(path) = std::env::var_os(SKIPPED_LOG) {
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|error| panic!("open {}: {error}", path.to_string_lossy()));
        let why = why.replace(['\n', '\t'], " ");
        writeln!(log, "{test}\t{why}").expect("write the skipped-tests log");
    }
}

/// The report's entry for `name`.
pub fn interface<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["interfaces"]
        .as_array()
        .expect("interfaces array")
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {report}"))
}

/// Packets of one class in an interface entry (0 when the class is absent).
/// The names of the interfaces a report lists.
pub fn served(report: &Value) -> Vec<&str> {
    report["interfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .map(|entry| entry["name"].as_str().expect("name"))
        .collect()
}

/// A finished command's stderr, as text.
pub fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn class_packets(entry: &Value, family: &str, address: &str, action: &str) -> u64 {
    entry["by_class"]
        .as_array()
        .expect("by_class array")
        .iter()
        .find(|c| c["family"] == family && c["address"] == address && c["action"] == action)
        .map_or(0, |c| c["packets"].as_u64().expect("packets"))
}

pub struct HttpResponse {
    pub status: u16,
    /// Lower-cased.
    pub headers: String,
    pub body: String,
}

/// `GET path` over HTTP/1.0 to `address` inside `netns` (a probe's `--metrics`), with an `Accept`
/// header if given.
pub fn http_get(netns: &Netns, address: &str, path: &str, accept: Option<&str>) -> HttpResponse {
    try_http_get(netns, address, path, accept)
        .unwrap_or_else(|e| panic!("GET http://{address}{path} in {}: {e}", netns.name))
}

pub fn try_http_get(
    netns: &Netns,
    address: &str,
    path: &str,
    accept: Option<&str>,
) -> std::io::Result<HttpResponse> {
    let raw = netns.enter(|| -> std::io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect(address)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let accept = accept.map_or(String::new(), |accept| format!("Accept: {accept}\r\n"));
        write!(
            stream,
            "GET {path} HTTP/1.0\r\nHost: {address}\r\n{accept}\r\n"
        )?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        Ok(raw)
    })?;
    let raw = String::from_utf8(raw).expect("a UTF-8 response");
    let (headers, body) = raw.split_once("\r\n\r\n").expect("headers end");
    let status = headers
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("no status in {headers}"));
    Ok(HttpResponse {
        status,
        headers: headers.to_ascii_lowercase(),
        body: body.to_owned(),
    })
}

/// A directory under the system's temporary directory, removed on drop.
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let path = std::env::temp_dir().join(unique_name(tag));
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        Self(path)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Debian's Prometheus (`prometheus`), run in a namespace with a configuration file; its data
/// and log live in the configuration's directory. Killed on drop.
pub struct Prometheus<'a> {
    netns: &'a Netns,
    pub address: &'static str,
    log: std::path::PathBuf,
    _process: KillOnDrop,
}

impl<'a> Prometheus<'a> {
    /// Inside the test's own namespace, so a fixed port collides with nothing.
    const ADDRESS: &'static str = "127.0.0.1:9090";

    pub fn start(netns: &'a Netns, config_file: &std::path::Path) -> Self {
        let dir = config_file.parent().expect("the configuration's directory");
        let log = dir.join("prometheus.log");
        let log_file = File::create(&log).expect("create the Prometheus log");
        let process = Command::new("ip")
            .args(["netns", "exec", &netns.name, "prometheus"])
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={}", Self::ADDRESS))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone the log"))
            .stderr(log_file)
            .spawn()
            .expect("start prometheus (apt-get install prometheus, or cargo xtask setup)");
        Self {
            netns,
            address: Self::ADDRESS,
            log,
            _process: KillOnDrop(process),
        }
    }

    /// What Prometheus logged so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET /api/v1/<endpoint>?<query>` (the query already encoded), parsed; `None` while
    /// Prometheus does not answer 200.
    pub fn api(&self, endpoint: &str, query: &str) -> Option<Value> {
        let path = if query.is_empty() {
            format!("/api/v1/{endpoint}")
        } else {
            format!("/api/v1/{endpoint}?{query}")
        };
        let response = try_http_get(self.netns, self.address, &path, None).ok()?;
        (response.status == 200).then(|| {
            serde_json::from_str(&response.body)
                .unwrap_or_else(|e| panic!("{path} answered no JSON ({e}): {}", response.body))
        })
    }

    /// The instant query `expr` now; `None` while Prometheus does not answer 200.
    pub fn query(&self, expr: &str) -> Option<Value> {
        self.api("query", &format!("query={}", url_encode(expr)))
    }
}

/// `text` as a URL query value: everything but unreserved characters percent-encoded.
pub fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// A command `localnet-probe audit` advised, pasted into `sh -c` in `netns` (with the host's
/// mounts) as an operator would, with `binary` for its first `localnet-probe` and
/// `--json --duration 0.5` added so that it ends: its last JSON report. Panics unless it exits 0.
pub fn pasted(netns: &Netns, binary: &str, command: &str) -> Value {
    let command = command.replacen("localnet-probe", binary, 1) + " --json --duration 0.5";
    let output = netns.output("sh", &["-c", &command]);
    assert!(output.status.success(), "{command}: {output:?}");
    serde_json::from_slice(
        output
            .stdout
            .split(|byte| *byte == b'\n')
            .rfind(|line| !line.is_empty())
            .unwrap_or_else(|| panic!("{command} wrote no report")),
    )
    .unwrap_or_else(|e| panic!("{command}: its last line is not JSON ({e})"))
}

/// The command in an advice `text` that starts with `start`, up to `end` or the text's end.
pub fn advised<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let rest = &text[text
        .find(start)
        .unwrap_or_else(|| panic!("no {start:?} in {text}"))..];
    rest.find(end).map_or(rest, |at| &rest[..at])
}
