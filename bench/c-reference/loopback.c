// SPDX-License-Identifier: MIT OR Apache-2.0
//
// Reference programs for the benchmark, written as a C XDP program usually is and built with
// clang, so the probe is also measured against code that neither its toolchain (rustc, LLVM 22,
// bpf-linker) nor its classifier produced. They match what a minimal loopback filter matches:
// untagged IPv4 and IPv6 frames whose source or destination is 127.0.0.0/8, ::1 or
// ::ffff:127.0.0.0/104, with no header checks, no VLAN tags and no ARP.

#include <linux/bpf.h>

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int(*name)[val]
#define __type(name, val) typeof(val) *name

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_lookup_elem;
static __u64 (*bpf_xdp_get_buff_len)(struct xdp_md *ctx) = (void *)BPF_FUNC_xdp_get_buff_len;

// Ethertypes and address parts as they sit in memory (the programs run little-endian).
#define ETH_P_IP_BE 0x0008
#define ETH_P_IPV6_BE 0xdd86
#define IPV4_LOOPBACK_BYTE 127
#define IPV6_LOOPBACK_LOW 0x0100000000000000ULL
#define IPV4_MAPPED_LOOPBACK_LOW 0x0000007fffff0000ULL
#define IPV4_MAPPED_LOOPBACK_MASK 0x000000ffffffffffULL

enum match { NO_MATCH, MATCH_IPV4, MATCH_IPV6 };

static __always_inline int loopback6(__u64 high, __u64 low)
{
	return high == 0 && (low == IPV6_LOOPBACK_LOW ||
			     (low & IPV4_MAPPED_LOOPBACK_MASK) == IPV4_MAPPED_LOOPBACK_LOW);
}

static __always_inline enum match classify(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	if (data + 14 > data_end)
		return NO_MATCH;
	__u16 ethertype = *(__u16 *)(data + 12);
	if (ethertype == ETH_P_IP_BE) {
		if (data + 14 + 20 > data_end)
			return NO_MATCH;
		__u8 *source = data + 14 + 12, *destination = data + 14 + 16;
		if (*source == IPV4_LOOPBACK_BYTE || *destination == IPV4_LOOPBACK_BYTE)
			return MATCH_IPV4;
	} else if (ethertype == ETH_P_IPV6_BE) {
		if (data + 14 + 40 > data_end)
			return NO_MATCH;
		__u64 *addresses = data + 14 + 8;
		if (loopback6(addresses[0], addresses[1]) || loopback6(addresses[2], addresses[3]))
			return MATCH_IPV6;
	}
	return NO_MATCH;
}

// Drops what it matches, counts nothing.
SEC("xdp")
int c_classify_drop(struct xdp_md *ctx)
{
	return classify(ctx) == NO_MATCH ? XDP_PASS : XDP_DROP;
}

// The key of each interface's first counter, by ifindex.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u32);
} interface_keys SEC(".maps");

struct counter {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, struct counter);
} counters SEC(".maps");

// Drops what it matches and counts it exactly, per interface and family: frames, and bytes in
// every buffer of the frame (a helper call, as without CAP_PERFMON a program may not subtract
// packet pointers).
SEC("xdp.frags")
int c_classify_count_drop(struct xdp_md *ctx)
{
	enum match match = classify(ctx);
	if (match == NO_MATCH)
		return XDP_PASS;
	__u32 ifindex = ctx->ingress_ifindex;
	__u32 *first_key = bpf_map_lookup_elem(&interface_keys, &ifindex);
	if (!first_key)
		return XDP_PASS;
	__u32 key = *first_key + match;
	struct counter *counter = bpf_map_lookup_elem(&counters, &key);
	if (counter) {
		counter->packets++;
		counter->bytes += bpf_xdp_get_buff_len(ctx);
	}
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
