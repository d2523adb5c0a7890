//! Packets that a capture names by ethertype without an Ethernet header in front, as Linux cooked
//! captures (`tcpdump -i any`: SLL, SLL2) hold them, seen as the Ethernet frames they were.

use core::mem::{MaybeUninit, size_of};

use crate::classify::{ETHERNET_HEADER_LEN, Frame};

/// Where the ethertype sits in an Ethernet header.
const ETHERTYPE_OFFSET: usize = ETHERNET_HEADER_LEN - 2;

/// A network-layer packet and its ethertype, read as an Ethernet frame with zero addresses:
/// [`crate::classify`] applies its rules to it (VLAN tags included) without a copy of the packet
/// and without a rule of its own. The classifier never reads the addresses.
#[derive(Clone, Copy, Debug)]
pub struct EthernetView<'a> {
    ethertype: [u8; 2],
    payload: &'a [u8],
}

impl<'a> EthernetView<'a> {
    /// `ethertype` as the capture gives it, in network byte order; `payload` what follows it.
    pub const fn new(ethertype: [u8; 2], payload: &'a [u8]) -> Self {
        Self { ethertype, payload }
    }

    fn byte(&self, offset: usize) -> u8 {
        match offset.checked_sub(ETHERNET_HEADER_LEN) {
            Some(in_payload) => self.payload[in_payload],
            None if offset >= ETHERTYPE_OFFSET => self.ethertype[offset - ETHERTYPE_OFFSET],
            None => 0,
        }
    }
}

impl Frame for EthernetView<'_> {
    fn holds(&self, len: usize) -> bool {
        len <= ETHERNET_HEADER_LEN + self.payload.len()
    }

    fn load<T: Copy>(&self, offset: usize) -> Option<T> {
        if let Some(in_payload) = offset.checked_sub(ETHERNET_HEADER_LEN) {
            return self.payload.load(in_payload);
        }
        if !self.holds(offset.checked_add(size_of::<T>())?) {
            return None;
        }
        // A load that begins in the header is put together byte by byte.
        let mut value = MaybeUninit::<T>::uninit();
        let bytes = value.as_mut_ptr().cast::<u8>();
        for index in 0..size_of::<T>() {
            // SAFETY: `index` is within the `size_of::<T>()` bytes of `value`.
            unsafe { bytes.add(index).write(self.byte(offset + index)) };
        }
        // SAFETY: every byte was written above; every `T` read through `Frame` is plain data
        // (integers and byte arrays) for which any bit pattern is valid.
        Some(unsafe { value.assume_init() })
    }
}
