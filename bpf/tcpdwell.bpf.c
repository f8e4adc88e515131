// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * tcpdwell.bpf.c — every TCP state transition, the TIME_WAIT lifecycle the transition
 * tracepoint never shows, and a snapshot of the sockets that already exist.
 *
 * Hooks (kprobes and fentry do not work on our kernels, see shared/KERNEL-NOTES.md):
 *   tp_btf/inet_sock_set_state   transitions; per-socket entry time and owner in sk_storage
 *   tp_btf/inet_sk_error_report  remembers sk_err for the transition that follows it
 *   tp_btf/timer_start|cancel|expire_entry, filtered on tw_timer_handler: the timewait sock
 *   iter/tcp                     sockets (and timewait socks) that exist when tracing starts
 *
 * Records go to the ring buffer "events" as struct tcpdwell_event (bpf/tcpdwell.h).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "tcpdwell.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

char LICENSE[] SEC("license") = "Dual BSD/GPL";

extern const void tw_timer_handler __ksym; /* static in net/ipv4/inet_timewait_sock.c, resolved from kallsyms */
/* Turns an address into a read-only typed pointer: plain loads, no bpf_probe_read call each.
 * The verifier rewrites the call into a register move (kernel/bpf/verifier.c fixup_kfunc_call). */
extern void *bpf_rdonly_cast(const void *obj__ign, __u32 btf_id) __ksym;
extern unsigned int CONFIG_HZ __kconfig;

/* Kept with the socket and freed with it: no size limit, no leak when a CLOSE is missed.
 * BPF_F_CLONE copies it from a listener into each accepted child, so the child starts with
 * its listener's owner (the child's first transitions run in softirq, where the current
 * task is whoever the packet interrupted). */
struct sk_info {
	__u64 entered_ns; /* boot ns the socket entered its current state; with cookie 0 (an entry made by the
			   * dump_files walk, owner only) unknown */
	__u64 cookie;     /* whose entry this is: differs after a clone from the listener; 0: made by the walk */
	__u32 owner_pid;  /* tgid */
	__s32 pending_err; /* sk_err from inet_sk_error_report, carried to the next transition */
	char owner_comm[16]; /* the owner's process name (its thread group leader's comm, as ps and ss -p show) */
	__u8 state;        /* the state we saw it enter, to notice a transition we never saw */
	__u8 owner_inherited; /* the owner is its listener's (cloned): the acceptor, when accept() reports it, replaces it */
	__u8 owner_walk;   /* the dump_files walk that last set the owner (walk_state.gen): its first holder wins */
	__u8 rst;          /* TCPDWELL_F_RST_SENT/RECEIVED: the RSTs it sent or received so far, for its X->CLOSE */
	__u8 _pad[4];      /* pinned entries of older versions hold zeros in the bytes above (same size) */
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_CLONE);
	__type(key, int);
	__type(value, struct sk_info);
} sk_state SEC(".maps");

/* The timewait sock is not a full socket (no sk_storage): what its end event needs is kept
 * here, keyed by its address, from its start to its end. LRU, so a missed end cannot leak. */
struct tw_info {
	__u64 start_ns;
	__u64 cgroup_id;
	__u32 owner_pid;
	__u32 substate; /* tw_substate at the start, TIME_WAIT once flipped; 0 in entries pinned by
			 * an older agent (same size: it was padding), which then report no flip */
	char owner_comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 131072); /* net.ipv4.tcp_max_tw_buckets */
	__type(key, __u64);
	__type(value, struct tw_info);
} tw_state SEC(".maps");

/*
 * Another tracer's per-socket state: the running agent's pinned sk_state and tw_state, which
 * `top`, `trace` and `states` reuse through these two maps (src/kernel/tracer.ts, peerPinDir)
 * so that sockets older than them show their real entry time and owner. Read by the snapshot
 * only, never written: two programs updating one socket's entry at the same transition would
 * each take the other's update for a transition they missed. Definitions must stay those of
 * sk_state and tw_state (libbpf reuses a pin only when type, sizes and flags match); peer_tw_state
 * is sized like tw_state only when there is a pin to reuse, so it costs nothing otherwise.
 */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_CLONE);
	__type(key, int);
	__type(value, struct sk_info);
} peer_sk_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1); /* set to tw_state's before load when reusing a pin */
	__type(key, __u64);
	__type(value, struct tw_info);
} peer_tw_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	/* 16 MiB: ~116k records, about half a second of an unpaced loopback storm on 2 CPUs
	 * (~250k records/s), so a stall of the reader (a GC, a large batch published) does not
	 * cost events (BENCHMARKS.md, issue 13: 4 MiB vs 16 MiB). Kernel memory, charged to the
	 * agent's cgroup; the agent may resize before load (--ring-bytes). */
	__uint(max_entries, 16 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tcpdwell_counters);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tcpdwell_config);
} dwell_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32); /* netns inode */
	__type(value, __u8);
} netns_filter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u16); /* port, host byte order */
	__type(value, __u8);
} port_filter SEC(".maps");

/*
 * Per-CPU hand-offs between tracepoints that fire back to back on one CPU:
 *
 * - tw_start: the timewait sock is scheduled inside tcp_time_wait(), which then calls
 *   tcp_done() and so fires the full socket's X->CLOSE transition on the same CPU. The start
 *   event waits here for that transition so it can carry the socket's owner and cgroup.
 *
 * - tw_cancel: timer:timer_cancel fires for three different things: natural expiry
 *   (detach, then timer_expire_entry of the same timer), a re-arm (mod_timer: detach, then
 *   timer_start of the same timer — the FIN_WAIT2->TIME_WAIT flip) and a kill
 *   (timer_shutdown_sync: nothing follows). Both follow-ups happen under the timer base lock
 *   with interrupts off, so the next timer event on this CPU tells which it was; anything
 *   else means the timewait sock was killed. The end event is read at cancel time, while the
 *   timewait sock is certainly alive.
 */
struct pcpu_handoff {
	__u64 tw_start_cookie; /* nonzero while tw_start waits for its socket's close */
	__u64 tw_start_addr;
	__u64 tw_cancel_addr;  /* nonzero while tw_cancel waits to be settled */
	struct tcpdwell_event tw_start;
	struct tcpdwell_event tw_cancel;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pcpu_handoff);
} handoff SEC(".maps");

/* CPUs whose timer_cancel of a timewait sock waits to be settled (pcpu_handoff.tw_cancel_addr
 * set). Every timer on the host fires the timer programs, and all but a few per connection are
 * not timewait timers: with this at 0 such a run needs nothing but the callback check, not even
 * the per-CPU hand-off (measured: BENCHMARKS.md, kernel program cost). */
__u32 tw_cancels_waiting SEC(".bss");

/* Anchors the ABI enums in BTF for the generator (scripts/gen-abi.mjs). */
const volatile struct tcpdwell_abi tcpdwell_abi_anchor = {};

static __always_inline struct tcpdwell_counters *get_counters(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&counters, &zero);
}

/* Bytes one record takes in the ring: the kernel's 8-byte header, the record rounded up to 8. */
#define RING_ENTRY_BYTES (8 + ((sizeof(struct tcpdwell_event) + 7) & ~7))

static __always_inline __u64 wakeup_flags(const struct tcpdwell_config *cfg)
{
	/* Waking the reader for every record costs the traced workload more than half its rate
	 * in a VM (KERNEL-NOTES): wake only when a batch worth reading waits; the reader also
	 * polls on a timer, so a quiet ring is still read within its poll interval.
	 * Wake once, on the record whose reserve made the unread data cross wakeup_bytes, not on
	 * every record while it stays above: when the reader lags behind (the workload holds the
	 * CPUs), that was a wake-up (irq_work, then waking the reader) per record. Measured on the 2-CPU VM:
	 * `trace --format raw` let the churn run at 0.47x its rate with wake-ups while above,
	 * and 0.78x with one wake-up per crossing (one 3 s rep each, no loss either way; the same
	 * kernel work with nothing emitted: 0.74-0.80x). A crossing that concurrent producers both miss is caught
	 * by the reader's poll timer. */
	__u32 want = cfg ? cfg->wakeup_bytes : 0;
	if (!want)
		return 0;
	__u64 avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA); /* includes this reserved record */
	return avail >= want && avail < want + RING_ENTRY_BYTES ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

static __always_inline const struct tcpdwell_config *get_config(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&dwell_config, &zero);
}

/* Copies a finished record into the ring; counts it as lost when the ring is full. */
static __always_inline void emit(const struct tcpdwell_event *ev)
{
	struct tcpdwell_counters *c = get_counters();
	const struct tcpdwell_config *cfg = get_config();
	struct tcpdwell_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		if (c)
			c->lost_ring_full++;
		return;
	}
	__builtin_memcpy(e, ev, sizeof(*e));
	bpf_ringbuf_submit(e, wakeup_flags(cfg));
	if (c)
		c->events++;
}

static __always_inline bool wanted_socket(const struct tcpdwell_config *cfg, __u16 family, __u32 netns, __u16 sport, __u16 dport);

/* True when the agent's filters let this event through. */
static __always_inline bool wanted(const struct tcpdwell_event *ev)
{
	return wanted_socket(get_config(), ev->family, ev->netns, ev->sport, ev->dport);
}

/* Family, remote port, addresses and netns of any socket-like object (full, request or
 * timewait sock all start with struct sock_common). The local port is the caller's: skc_num
 * is already 0 when a closing socket's port has been released (seen on X->CLOSE), so full
 * sockets use inet_sport and timewait socks tw_sport, as the tracepoint itself does.
 * skc is a BTF pointer (trusted, or from bpf_rdonly_cast): fields are read with plain loads,
 * which cost a fraction of a bpf_probe_read_kernel call each (measured: handle_set_state went
 * from 761 ns to the figure in BENCHMARKS.md). */
static __always_inline void fill_common(struct tcpdwell_event *e, const struct sock_common *skc)
{
	e->family = skc->skc_family;
	e->dport = bpf_ntohs(skc->skc_dport);
	e->netns = skc->skc_net.net->ns.inum;
	if (e->family == AF_INET6) {
		const __u64 *s6 = (const __u64 *)skc->skc_v6_rcv_saddr.in6_u.u6_addr8;
		const __u64 *d6 = (const __u64 *)skc->skc_v6_daddr.in6_u.u6_addr8;
		((__u64 *)e->saddr)[0] = s6[0];
		((__u64 *)e->saddr)[1] = s6[1];
		((__u64 *)e->daddr)[0] = d6[0];
		((__u64 *)e->daddr)[1] = d6[1];
	} else {
		*(__u32 *)e->saddr = skc->skc_rcv_saddr;
		*(__u32 *)e->daddr = skc->skc_daddr;
	}
}

static __always_inline __u64 sk_cgroup_id(const struct sock *sk)
{
	struct cgroup *cg = sk->sk_cgrp_data.cgroup;
	return cg ? cg->kn->id : 0;
}

/* inet_sport sits in struct inet_sock, past struct sock: the verifier would refuse it through
 * a struct sock pointer, so the same address is viewed as an inet_sock. */
static __always_inline __u16 sk_local_port(const struct sock *sk)
{
	const struct inet_sock *inet = bpf_rdonly_cast(sk, bpf_core_type_id_kernel(struct inet_sock));
	return bpf_ntohs(inet->inet_sport);
}

/* Whether the current task is acting on the socket (connect, listen, close, shutdown, or
 * the backlog run by release_sock): it then holds the socket lock. Packet-driven
 * transitions run in softirq on top of whatever task was interrupted (on loopback, often the
 * peer's process) and never while the lock is owned — softirq defers to the backlog then.
 * preempt_count would say "softirq" directly, but __preempt_count is not in kallsyms here
 * (no CONFIG_KALLSYMS_ALL), so typed per-CPU ksyms fail to load. */
static __always_inline bool task_owns_socket(const struct sock *sk)
{
	return sk->sk_lock.owned != 0;
}

static __always_inline __u64 jiffies_to_boot_ns(__u64 expires, __u64 now_ns)
{
	__s64 left = (__s64)(expires - bpf_jiffies64());
	return now_ns + left * (1000000000LL / CONFIG_HZ);
}

static __always_inline struct pcpu_handoff *get_handoff(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&handoff, &zero);
}

static __always_inline void flush_tw_start(struct pcpu_handoff *h)
{
	if (!h->tw_start_cookie)
		return;
	if (wanted(&h->tw_start))
		emit(&h->tw_start);
	h->tw_start_cookie = 0;
}

/* ---- owners: the process `ss -p` names (the holder of the socket's file) ---- */

/* The acceptor of each socket accept() returned, until the socket's next transition claims it
 * (the accept tracepoint has no trusted socket to reach its storage with). LRU: a socket that
 * closes in process context, or never transitions again, cannot leak an entry. */
struct accept_owner {
	__u32 pid;     /* tgid */
	char comm[16]; /* the thread group leader's comm */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* socket cookie */
	__type(value, struct accept_owner);
} accepted SEC(".maps");

/* Which dump_files walk this is (user space bumps gen before each): the first holder of a
 * socket a walk meets, in pid order, becomes its owner — a prefork parent for the listener its
 * children inherited, the child for the connection it accepted. */
struct walk_state {
	__u32 gen;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct walk_state);
} walk_state SEC(".maps");

/* A process's name: its thread group leader's comm. bpf_get_current_comm() is the thread's
 * (memcached's mc-worker, tokio-runtime-w), which neither ps nor ss -p shows. */
static __always_inline void process_comm(const struct task_struct *t, char comm[16])
{
	/* Plain loads (the leader is RCU-protected and the task trusted here): no helper call. */
	const struct task_struct *leader = t->group_leader;
	__builtin_memcpy(comm, leader->comm, 16);
}

/* The acceptor replaces the listener's owner a socket was cloned with (see handle_accept*). */
static __always_inline void claim_accepted(struct sk_info *si, __u64 cookie)
{
	struct accept_owner *a = bpf_map_lookup_elem(&accepted, &cookie);
	if (!a)
		return;
	si->owner_pid = a->pid;
	__builtin_memcpy(si->owner_comm, a->comm, sizeof(si->owner_comm));
	si->owner_inherited = 0;
	bpf_map_delete_elem(&accepted, &cookie);
}

/* What the agent's filters say of a socket, from the fields they look at (wanted() for a record). */
static __always_inline bool wanted_socket(const struct tcpdwell_config *cfg, __u16 family, __u32 netns, __u16 sport, __u16 dport)
{
	if (!cfg)
		return true;
	if (cfg->family && cfg->family != family)
		goto out;
	if (cfg->filter_netns && !bpf_map_lookup_elem(&netns_filter, &netns))
		goto out;
	if (cfg->filter_ports && !bpf_map_lookup_elem(&port_filter, &sport) && !bpf_map_lookup_elem(&port_filter, &dport))
		goto out;
	return true;
out:;
	struct tcpdwell_counters *c = get_counters();
	if (c)
		c->filtered++;
	return false;
}

/*
 * The socket's storage at a transition: the entry time and owner it holds go into the record
 * (entered_ns, owner, flags, error), and it takes the new state's. ev->pid, ev->comm and
 * ev->flags' PROCESS_CTX are set before (the owner is copied from them).
 */
static __always_inline void track(struct sock *sk, struct tcpdwell_event *ev, __u64 cookie, int oldstate, int newstate, __u64 now, bool proc)
{
	struct sk_info *si = bpf_sk_storage_get(&sk_state, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!si) {
		struct tcpdwell_counters *c = get_counters();
		if (c)
			c->lost_no_storage++;
		return;
	}
	if (si->cookie == cookie && si->state == oldstate) {
		ev->entered_ns = si->entered_ns;
		ev->flags |= TCPDWELL_F_ENTERED_KNOWN;
	} else if (si->cookie == cookie) {
		/* The kernel skips a run of this program that would nest in a running one on
		 * the same CPU (a softirq interrupting it: bpf_prog recursion_misses), so a
		 * transition can be missed. Then the time old_state was entered is unknown. */
		ev->flags |= TCPDWELL_F_GAP;
		struct tcpdwell_counters *c = get_counters();
		if (c)
			c->state_gaps++;
	} else {
		/* New to us, or cloned from its listener: the time it entered old_state is
		 * unknown, the owner (if any) is the listener's. */
		if (si->cookie)
			ev->flags |= TCPDWELL_F_CHILD;
		si->owner_inherited = si->cookie != 0;
		si->cookie = cookie;
		si->pending_err = 0;
		si->rst = 0;
	}
	if (newstate == TCP_CLOSE && oldstate != TCP_LISTEN)
		ev->flags |= si->rst;
	ev->error = si->pending_err;
	si->pending_err = 0;
	/* A same-state transition (FIN_WAIT1 -> FIN_WAIT1: close() after shutdown(SHUT_WR)
	 * before the FIN is acked; LAST_ACK, FIN_WAIT2 alike) leaves nothing: the entry time stays. */
	if (oldstate != newstate || !(ev->flags & TCPDWELL_F_ENTERED_KNOWN))
		si->entered_ns = now;
	si->state = newstate;
	if (proc) {
		si->owner_pid = ev->pid;
		process_comm(bpf_get_current_task_btf(), si->owner_comm);
		if (si->owner_inherited) {
			si->owner_inherited = 0;
			bpf_map_delete_elem(&accepted, &cookie);
		}
	} else if (si->owner_inherited && oldstate != TCP_LISTEN && oldstate != TCP_SYN_RECV) {
		claim_accepted(si, cookie); /* accepted since its handshake? (not before it completed) */
	}
	if (si->owner_pid) {
		ev->owner_pid = si->owner_pid;
		__builtin_memcpy(ev->owner_comm, si->owner_comm, sizeof(ev->owner_comm));
		ev->flags |= TCPDWELL_F_OWNER_KNOWN;
	}
}

/*
 * The socket's vital signs at its close, as tcplife and ss -ti read them: plain loads through
 * bpf_rdonly_cast (no helper call), only at X->CLOSE. The full socket still holds them there,
 * also when it hands over to a timewait sock (FIN_WAIT2/CLOSING -> CLOSE: tcp_time_wait() runs
 * first, tcp_done() after), which keeps none of them.
 */
static __always_inline void read_vitals(const struct sock *sk, struct tcpdwell_event *ev)
{
	const struct tcp_sock *tp = bpf_rdonly_cast(sk, bpf_core_type_id_kernel(struct tcp_sock));
	ev->srtt_us = tp->srtt_us >> 3;
	ev->total_retrans = tp->total_retrans;
	ev->bytes_acked = tp->bytes_acked;
	ev->bytes_received = tp->bytes_received;
}

/* Everything of a transition's record but what the timewait hand-off adds; ev is zeroed. */
static __always_inline void fill_transition(struct sock *sk, struct tcpdwell_event *ev, __u64 cookie, int oldstate, int newstate, __u64 now, bool proc)
{
	ev->type = TCPDWELL_EV_TRANSITION;
	ev->ts_ns = now;
	ev->cookie = cookie;
	ev->old_state = oldstate;
	ev->new_state = newstate;
	ev->pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(&ev->comm, sizeof(ev->comm));
	ev->cgroup_id = sk_cgroup_id(sk);
	fill_common(ev, &sk->__sk_common);
	ev->sport = sk_local_port(sk);
	if (proc)
		ev->flags |= TCPDWELL_F_PROCESS_CTX;
	track(sk, ev, cookie, oldstate, newstate, now, proc);
	/* A socket that dies of an error (tcp_done_with_error: RST, timeout) has sk_err set
	 * before its X->CLOSE, while sk_error_report() runs only after it (6.x): take it here. */
	if (newstate == TCP_CLOSE) {
		if (!ev->error)
			ev->error = sk->sk_err;
		if (oldstate != TCP_LISTEN) /* a listener is no connection: nothing to read */
			read_vitals(sk, ev);
	}
}

/* The timewait sock scheduled just before this X->CLOSE on this CPU is this socket's: give its
 * start event the socket's owner and cgroup, keep them for its end, and emit it (before ev). */
static __always_inline void hand_off_tw_start(struct pcpu_handoff *h, const struct tcpdwell_event *ev, __u64 cookie, int newstate)
{
	if (h->tw_start_cookie == cookie && newstate == TCP_CLOSE) {
		struct tcpdwell_event *tw = &h->tw_start;
		tw->cgroup_id = ev->cgroup_id;
		tw->pid = ev->pid;
		__builtin_memcpy(tw->comm, ev->comm, sizeof(tw->comm));
		tw->owner_pid = ev->owner_pid;
		__builtin_memcpy(tw->owner_comm, ev->owner_comm, sizeof(tw->owner_comm));
		tw->flags |= ev->flags & TCPDWELL_F_OWNER_KNOWN;
		struct tw_info *ti = bpf_map_lookup_elem(&tw_state, &h->tw_start_addr);
		if (ti) {
			ti->cgroup_id = tw->cgroup_id;
			ti->owner_pid = tw->owner_pid;
			__builtin_memcpy(ti->owner_comm, tw->owner_comm, sizeof(ti->owner_comm));
		}
	} else {
		struct tcpdwell_counters *c = get_counters();
		if (c)
			c->tw_unmatched++;
	}
	flush_tw_start(h);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(handle_set_state, const struct sock *csk, const int oldstate, const int newstate)
{
	struct sock *sk = (struct sock *)csk;
	if (sk->sk_protocol != IPPROTO_TCP) /* the tracepoint fires for MPTCP and SCTP too */
		return 0;

	__u64 now = bpf_ktime_get_boot_ns();
	/* Cookies are assigned lazily: taking it here, at the first transition, makes sure the
	 * timewait sock (which copies sk_cookie) carries the same one later. */
	__u64 cookie = bpf_get_socket_cookie(sk);
	struct pcpu_handoff *h = get_handoff();
	bool proc = task_owns_socket(sk);

	/* Once per active close, a timewait start waits for this transition: its record must
	 * reach the ring first, and it takes fields of this one, which is built aside then. */
	if (h && h->tw_start_cookie) {
		struct tcpdwell_event ev = {};
		fill_transition(sk, &ev, cookie, oldstate, newstate, now, proc);
		hand_off_tw_start(h, &ev, cookie, newstate);
		if (wanted(&ev))
			emit(&ev);
		return 0;
	}

	/* Otherwise the record is built in place in the ring (no copy), and only once the filters
	 * want it; the socket's storage is kept up to date either way. */
	const struct tcpdwell_config *cfg = get_config();
	const struct sock_common *skc = &sk->__sk_common;
	if (!wanted_socket(cfg, skc->skc_family, skc->skc_net.net->ns.inum, sk_local_port(sk), bpf_ntohs(skc->skc_dport))) {
		struct tcpdwell_event ev = {};
		fill_transition(sk, &ev, cookie, oldstate, newstate, now, proc);
		return 0;
	}
	struct tcpdwell_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		struct tcpdwell_event ev = {};
		fill_transition(sk, &ev, cookie, oldstate, newstate, now, proc);
		struct tcpdwell_counters *c = get_counters();
		if (c)
			c->lost_ring_full++;
		return 0;
	}
	__builtin_memset(e, 0, sizeof(*e));
	fill_transition(sk, e, cookie, oldstate, newstate, now, proc);
	bpf_ringbuf_submit(e, wakeup_flags(cfg));
	struct tcpdwell_counters *c = get_counters();
	if (c)
		c->events++;
	return 0;
}

SEC("tp_btf/inet_sk_error_report")
int BPF_PROG(handle_error_report, const struct sock *csk)
{
	struct sock *sk = (struct sock *)csk;
	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	/* Errors reported on a live socket (e.g. ICMP unreachable) wait for its next transition.
	 * A closed socket's error was already taken from sk_err by its X->CLOSE. */
	if (sk->__sk_common.skc_state == TCP_CLOSE)
		return 0;
	struct sk_info *si = bpf_sk_storage_get(&sk_state, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (si)
		si->pending_err = sk->sk_err;
	return 0;
}

/* ---- the timewait sock ---- */

static __always_inline bool is_tw_timer(const struct timer_list *timer)
{
	return (unsigned long)timer->function == (unsigned long)&tw_timer_handler;
}

/* The timewait sock that owns this timer, as a plain address. The verifier rejects
 * container_of() from the trusted timer pointer ("invalid negative access"), so the fields
 * are read with BPF_CORE_READ from the scalar. */
static __always_inline __u64 tw_addr_of(const struct timer_list *timer)
{
	return (__u64)timer - bpf_core_field_offset(struct inet_timewait_sock, tw_timer);
}

static __always_inline void fill_tw(struct tcpdwell_event *e, __u64 tw_addr, __u64 now)
{
	const struct inet_timewait_sock *tw =
		bpf_rdonly_cast((void *)tw_addr, bpf_core_type_id_kernel(struct inet_timewait_sock));
	fill_common(e, &tw->__tw_common);
	e->sport = bpf_ntohs(tw->tw_sport);
	e->cookie = tw->__tw_common.skc_cookie.counter;
	e->substate = tw->tw_substate;
	e->new_state = TCP_TIME_WAIT;
	e->expires_ns = jiffies_to_boot_ns(tw->tw_timer.expires, now);
	e->ts_ns = now;
}

/* Settles a cancel left on this CPU by the previous timer event: see struct pcpu_handoff.
 * Returns true when the current event was the re-arm of that same timewait sock. */
static __always_inline bool settle_cancel(struct pcpu_handoff *h, __u64 tw_addr, bool is_start, bool is_expire)
{
	if (!h->tw_cancel_addr)
		return false;
	__u64 addr = h->tw_cancel_addr;
	bool same = addr == tw_addr;
	h->tw_cancel_addr = 0;
	__sync_fetch_and_add(&tw_cancels_waiting, -1);
	if (same && is_start)
		return true;
	struct tcpdwell_event *e = &h->tw_cancel;
	e->reason = same && is_expire ? TCPDWELL_TW_EXPIRED : TCPDWELL_TW_KILLED;
	bpf_map_delete_elem(&tw_state, &addr);
	if (wanted(e))
		emit(e);
	return false;
}

SEC("tp_btf/timer_start")
int BPF_PROG(handle_timer_start, struct timer_list *timer, unsigned long bucket_expiry)
{
	/* The callback first: most runs are for other timers, and end here. */
	bool tw = is_tw_timer(timer);
	if (!tw && !tw_cancels_waiting)
		return 0;
	struct pcpu_handoff *h = get_handoff();
	if (!h)
		return 0;
	if (!tw && !h->tw_cancel_addr)
		return 0; /* the common case: some other timer, nothing pending */
	__u64 addr = tw ? tw_addr_of(timer) : 0;
	if (settle_cancel(h, addr, tw, false)) {
		/* Re-armed: the same timewait. A retransmitted FIN in TIME_WAIT re-arms it too; the
		 * peer's FIN to an orphan in FIN_WAIT2 also flips its substate, which no other event
		 * shows (measured by make soak: the live table kept such socks in FIN_WAIT2 while ss
		 * showed TIME-WAIT). The cancel before this start read the substate already flipped
		 * (tcp_timewait_state_process sets it before inet_twsk_reschedule). */
		struct tcpdwell_event *e = &h->tw_cancel;
		struct tw_info *ti = bpf_map_lookup_elem(&tw_state, &addr);
		if (ti && ti->substate == TCP_FIN_WAIT2 && e->substate == TCP_TIME_WAIT) {
			ti->substate = TCP_TIME_WAIT;
			e->type = TCPDWELL_EV_TIMEWAIT_START;
			e->flags |= TCPDWELL_F_FLIP; /* entered_ns: the timewait's start, from ti */
			e->reason = 0;
			e->expires_ns = jiffies_to_boot_ns(timer->expires, e->ts_ns);
			if (wanted(e))
				emit(e);
		}
		return 0;
	}
	if (!tw)
		return 0;

	__u64 now = bpf_ktime_get_boot_ns();
	flush_tw_start(h); /* an earlier start that never met its socket's close */
	struct tcpdwell_event *e = &h->tw_start;
	__builtin_memset(e, 0, sizeof(*e));
	e->type = TCPDWELL_EV_TIMEWAIT_START;
	fill_tw(e, addr, now);
	e->entered_ns = now;
	e->flags = TCPDWELL_F_ENTERED_KNOWN;
	h->tw_start_cookie = e->cookie ? e->cookie : 1;
	h->tw_start_addr = addr;

	struct tw_info ti = { .start_ns = now, .substate = e->substate };
	bpf_map_update_elem(&tw_state, &addr, &ti, BPF_ANY);
	return 0;
}

SEC("tp_btf/timer_cancel")
int BPF_PROG(handle_timer_cancel, struct timer_list *timer)
{
	/* The callback first: most runs are for other timers, and end here. */
	bool tw = is_tw_timer(timer);
	if (!tw && !tw_cancels_waiting)
		return 0;
	struct pcpu_handoff *h = get_handoff();
	if (!h)
		return 0;
	if (!tw && !h->tw_cancel_addr)
		return 0;
	__u64 addr = tw ? tw_addr_of(timer) : 0;
	settle_cancel(h, addr, false, false);
	if (!tw)
		return 0;

	__u64 now = bpf_ktime_get_boot_ns();
	struct tcpdwell_event *e = &h->tw_cancel;
	__builtin_memset(e, 0, sizeof(*e));
	e->type = TCPDWELL_EV_TIMEWAIT_END;
	fill_tw(e, addr, now);
	struct tw_info *ti = bpf_map_lookup_elem(&tw_state, &addr);
	if (ti) {
		e->entered_ns = ti->start_ns;
		e->flags |= TCPDWELL_F_ENTERED_KNOWN;
		e->cgroup_id = ti->cgroup_id;
		e->owner_pid = ti->owner_pid;
		__builtin_memcpy(e->owner_comm, ti->owner_comm, sizeof(e->owner_comm));
		if (ti->owner_pid)
			e->flags |= TCPDWELL_F_OWNER_KNOWN;
	}
	e->pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(&e->comm, sizeof(e->comm));
	h->tw_cancel_addr = addr;
	__sync_fetch_and_add(&tw_cancels_waiting, 1);
	return 0;
}

SEC("tp_btf/timer_expire_entry")
int BPF_PROG(handle_timer_expire, struct timer_list *timer, unsigned long baseclk)
{
	/* The callback first: most runs are for other timers, and end here. */
	bool tw = is_tw_timer(timer);
	if (!tw && !tw_cancels_waiting)
		return 0;
	struct pcpu_handoff *h = get_handoff();
	if (!h)
		return 0;
	if (!tw && !h->tw_cancel_addr)
		return 0;
	__u64 addr = tw ? tw_addr_of(timer) : 0;
	settle_cancel(h, addr, false, tw);
	return 0;
}

/* ---- sockets that exist already ---- */

SEC("iter/tcp")
int dump_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	if (!skc)
		return 0;
	struct tcpdwell_event e = {};
	__u64 now = bpf_ktime_get_boot_ns();
	e.type = TCPDWELL_EV_SNAPSHOT;
	e.ts_ns = now;
	e.new_state = skc->skc_state;
	e.cookie = bpf_get_socket_cookie(skc);
	fill_common(&e, skc);
	e.sport = skc->skc_num; /* bound, since the socket is in the tables this walks */

	if (e.new_state == TCP_TIME_WAIT) {
		struct tcp_timewait_sock *ttw = bpf_skc_to_tcp_timewait_sock(skc);
		if (ttw) {
			__u64 addr = (__u64)ttw;
			e.substate = ttw->tw_sk.tw_substate;
			e.expires_ns = jiffies_to_boot_ns(ttw->tw_sk.tw_timer.expires, now);
			struct tw_info *ti = bpf_map_lookup_elem(&tw_state, &addr);
			if (!ti)
				ti = bpf_map_lookup_elem(&peer_tw_state, &addr);
			if (ti) {
				e.entered_ns = ti->start_ns;
				e.flags |= TCPDWELL_F_ENTERED_KNOWN;
				if (ti->owner_pid) {
					e.owner_pid = ti->owner_pid;
					__builtin_memcpy(e.owner_comm, ti->owner_comm, sizeof(e.owner_comm));
					e.flags |= TCPDWELL_F_OWNER_KNOWN;
				}
			}
		}
	} else if (e.new_state != TCP_NEW_SYN_RECV) {
		struct tcp_sock *tp = bpf_skc_to_tcp_sock(skc);
		if (tp) {
			struct sock *sk = (struct sock *)tp;
			e.cgroup_id = sk_cgroup_id(sk);
			struct sk_info *si = bpf_sk_storage_get(&sk_state, sk, 0, 0);
			/* The agent's (peer_sk_state) for what our own entry does not know: ours may
			 * be one the dump_files walk made (cookie 0), which knows the owner only. */
			struct sk_info *pi = !si || si->cookie != e.cookie ? bpf_sk_storage_get(&peer_sk_state, sk, 0, 0) : NULL;
			if (si && si->cookie == e.cookie && si->state == e.new_state) {
				e.entered_ns = si->entered_ns;
				e.flags |= TCPDWELL_F_ENTERED_KNOWN;
			} else if (pi && pi->cookie == e.cookie && pi->state == e.new_state) {
				e.entered_ns = pi->entered_ns;
				e.flags |= TCPDWELL_F_ENTERED_KNOWN;
			}
			if (!(si && (si->cookie == e.cookie || !si->cookie) && si->owner_pid))
				si = pi && pi->cookie == e.cookie && pi->owner_pid ? pi : NULL;
			if (si) {
				e.owner_pid = si->owner_pid;
				__builtin_memcpy(e.owner_comm, si->owner_comm, sizeof(e.owner_comm));
				e.flags |= TCPDWELL_F_OWNER_KNOWN;
			}
		}
	}
	if (wanted(&e))
		bpf_seq_write(ctx->meta->seq, &e, sizeof(e));
	return 0;
}

/* ---- listeners and who holds each socket (iter/task_file) ---- */

/* Per listener, what the SYN pressure detector needs beyond the socket's own fields. Freed with
 * the listener; not cloned into accepted children. */
struct listen_info {
	__u64 synack_retrans; /* tcp:tcp_retransmit_synack runs for its request socks */
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct listen_info);
} listen_state SEC(".maps");

/* A SYN-ACK sent again because the handshake's final ACK has not come (tcp_rtx_synack): the
 * half-open connections of this listener are not completing — lost ACKs, or spoofed SYNs. */
SEC("tp_btf/tcp_retransmit_synack")
int BPF_PROG(handle_synack_retrans, const struct sock *csk, const struct request_sock *req)
{
	struct sock *sk = (struct sock *)csk; /* the listener (or a Fast Open child in SYN_RECV) */
	struct listen_info *li = bpf_sk_storage_get(&listen_state, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (li)
		__sync_fetch_and_add(&li->synack_retrans, 1);
	return 0;
}

/* What a listener's queues hold now. qlen counts its request socks; sk_drops is bumped by
 * tcp_listendrop() for every SYN or completed handshake dropped with a full accept or SYN queue
 * (ListenOverflows, TCPReqQFullDrop, ...: the namespace's counters say which). */
static __always_inline void fill_listener(struct tcpdwell_sockfile *r, struct sock *sk)
{
	const struct inet_connection_sock *icsk = bpf_rdonly_cast(sk, bpf_core_type_id_kernel(struct inet_connection_sock));
	r->ack_backlog = sk->sk_ack_backlog;
	r->max_ack_backlog = sk->sk_max_ack_backlog;
	r->request_socks = icsk->icsk_accept_queue.qlen.counter;
	r->drops = sk->sk_drops.counter;
	struct listen_info *li = bpf_sk_storage_get(&listen_state, sk, 0, 0);
	if (li)
		r->synack_retrans = li->synack_retrans;
}

/* One TCP socket file of a process: the holder as `ss -p` names it (the process, by its thread
 * group leader's name), and for a listener its queues. Threads sharing a file table are walked
 * once (the kernel skips them), a socket shared by several processes once per process. */
static __always_inline int dump_file(struct bpf_iter__task_file *ctx, bool listeners_only)
{
	struct file *file = ctx->file;
	struct task_struct *task = ctx->task;
	if (!file || !task)
		return 0;
	struct socket *sock = bpf_sock_from_file(file);
	if (!sock)
		return 0;
	struct sock *sk = sock->sk;
	if (!sk || sk->sk_protocol != IPPROTO_TCP)
		return 0;
	__u16 family = sk->__sk_common.skc_family;
	if (family != AF_INET && family != AF_INET6)
		return 0;
	__u8 state = sk->__sk_common.skc_state;
	if (listeners_only && state != TCP_LISTEN)
		return 0;
	struct tcpdwell_sockfile r = {};
	r.ts_ns = bpf_ktime_get_boot_ns();
	r.cookie = bpf_get_socket_cookie(sk);
	r.netns = sk->__sk_common.skc_net.net->ns.inum;
	r.pid = task->tgid;
	r.fd = ctx->fd;
	r.sport = sk_local_port(sk);
	r.family = family;
	r.state = state;
	if (family == AF_INET6) {
		const __u64 *s6 = (const __u64 *)sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8;
		((__u64 *)r.saddr)[0] = s6[0];
		((__u64 *)r.saddr)[1] = s6[1];
	} else {
		*(__u32 *)r.saddr = sk->__sk_common.skc_rcv_saddr;
	}
	process_comm(task, r.comm);
	if (state == TCP_LISTEN)
		fill_listener(&r, sk);
	if (!listeners_only) {
		/* The holder is the owner, for sockets older than us (no transition seen) and for any
		 * whose owner changed hands since (accepted, inherited, passed over a unix socket). */
		__u32 zero = 0;
		struct walk_state *w = bpf_map_lookup_elem(&walk_state, &zero);
		struct sk_info *si = bpf_sk_storage_get(&sk_state, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		__u8 gen = w ? w->gen : 0;
		if (si && (si->owner_walk != gen || !si->owner_pid)) {
			si->owner_pid = r.pid;
			__builtin_memcpy(si->owner_comm, r.comm, sizeof(si->owner_comm));
			si->owner_walk = gen;
			si->owner_inherited = 0;
		}
	}
	bpf_seq_write(ctx->meta->seq, &r, sizeof(r));
	return 0;
}

SEC("iter/task_file")
int dump_files(struct bpf_iter__task_file *ctx)
{
	return dump_file(ctx, false);
}

SEC("iter/task_file")
int dump_listeners(struct bpf_iter__task_file *ctx)
{
	return dump_file(ctx, true);
}

/* ---- resets (tcp:tcp_send_reset, tcp:tcp_receive_reset) ---- */

/* The local and remote ends of a segment this host answers with an RST when no socket wanted
 * it (tcp_v4_send_reset / tcp_v6_send_reset with sk NULL): its destination is our end. The
 * headers are read from the packet with probe reads (packet bytes at a variable offset). */
static __always_inline void fill_from_segment(struct tcpdwell_event *e, const struct sk_buff *skb)
{
	unsigned char *head = skb->head;
	__u16 nh = skb->network_header, th = skb->transport_header;
	struct tcphdr tcp;
	if (skb->dev)
		e->netns = skb->dev->nd_net.net->ns.inum;
	if (bpf_probe_read_kernel(&tcp, sizeof(tcp), head + th))
		return;
	e->sport = bpf_ntohs(tcp.dest);
	e->dport = bpf_ntohs(tcp.source);
	if (skb->protocol == bpf_htons(0x86DD)) { /* ETH_P_IPV6 */
		struct ipv6hdr ip6;
		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), head + nh))
			return;
		e->family = AF_INET6;
		__builtin_memcpy(e->saddr, &ip6.daddr, 16);
		__builtin_memcpy(e->daddr, &ip6.saddr, 16);
	} else {
		struct iphdr ip;
		if (bpf_probe_read_kernel(&ip, sizeof(ip), head + nh))
			return;
		e->family = AF_INET;
		*(__u32 *)e->saddr = ip.daddr;
		*(__u32 *)e->daddr = ip.saddr;
	}
}

/* One RESET record: which socket (a full, timewait or request sock, or none), which way, and its owner. */
static __always_inline void emit_reset(const struct sock *sk, const struct sk_buff *skb, __u8 direction)
{
	struct tcpdwell_event ev = {};
	ev.type = TCPDWELL_EV_RESET;
	ev.reason = direction;
	ev.ts_ns = bpf_ktime_get_boot_ns();
	ev.pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(&ev.comm, sizeof(ev.comm));
	if (!sk || (skb && sk->__sk_common.skc_state == TCP_LISTEN)) {
		/* No socket, or a listener answering a segment of no connection of its own: the
		 * segment's ends say which connection the RST was for (a listener's are wildcards). */
		if (skb)
			fill_from_segment(&ev, skb);
		if (sk)
			ev.new_state = TCP_LISTEN;
	} else {
		__u8 state = sk->__sk_common.skc_state;
		ev.new_state = state;
		fill_common(&ev, &sk->__sk_common);
		if (state == TCP_TIME_WAIT) {
			const struct inet_timewait_sock *tw = bpf_rdonly_cast(sk, bpf_core_type_id_kernel(struct inet_timewait_sock));
			__u64 addr = (__u64)sk;
			ev.sport = bpf_ntohs(tw->tw_sport);
			ev.cookie = sk->__sk_common.skc_cookie.counter;
			struct tw_info *ti = bpf_map_lookup_elem(&tw_state, &addr);
			if (ti && ti->owner_pid) {
				ev.owner_pid = ti->owner_pid;
				__builtin_memcpy(ev.owner_comm, ti->owner_comm, sizeof(ev.owner_comm));
				ev.flags |= TCPDWELL_F_OWNER_KNOWN;
			}
		} else if (state == TCP_NEW_SYN_RECV) {
			ev.sport = sk->__sk_common.skc_num; /* a request sock: its listener's port */
		} else {
			struct sock *full = (struct sock *)sk;
			ev.sport = sk_local_port(full);
			ev.cookie = bpf_get_socket_cookie(full);
			ev.cgroup_id = sk_cgroup_id(full);
			struct sk_info *si = bpf_sk_storage_get(&sk_state, full, 0, 0);
			if (si && si->cookie == ev.cookie) /* for its X->CLOSE (a received RST always comes before it) */
				si->rst |= direction == TCPDWELL_RST_SENT ? TCPDWELL_F_RST_SENT : TCPDWELL_F_RST_RECEIVED;
			if (si && si->owner_pid) {
				ev.owner_pid = si->owner_pid;
				__builtin_memcpy(ev.owner_comm, si->owner_comm, sizeof(ev.owner_comm));
				ev.flags |= TCPDWELL_F_OWNER_KNOWN;
			}
		}
	}
	if (ev.family && wanted(&ev))
		emit(&ev);
}

SEC("tp_btf/tcp_send_reset")
int BPF_PROG(handle_send_reset, const struct sock *sk, const struct sk_buff *skb, int reason)
{
	emit_reset(sk, skb, TCPDWELL_RST_SENT);
	return 0;
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(handle_receive_reset, struct sock *sk)
{
	emit_reset(sk, NULL, TCPDWELL_RST_RECEIVED);
	return 0;
}

/* ---- accept(): the acceptor becomes the owner (syscalls:sys_exit_accept4 / sys_exit_accept) ---- */

/* The socket behind a new fd of the current process, as a plain address: the fd table is an
 * array indexed at run time, which only probe reads may walk, so what comes out is untrusted
 * (no socket storage through it: the owner waits in `accepted` for the socket's next
 * transition). A socket's file points back at it: that check rules out anything else. */
static __always_inline const struct sock *socket_of_fd(const struct task_struct *t, long nfd)
{
	/* Plain loads through BTF pointers (exception-table guarded, no helper call each: the same
	 * as for handle_set_state); only the slot of the fd array needs a probe read. */
	const struct fdtable *fdt = t->files->fdt;
	if (!fdt || nfd < 0 || nfd >= fdt->max_fds)
		return NULL;
	struct file *fp = NULL;
	if (bpf_probe_read_kernel(&fp, sizeof(fp), &fdt->fd[nfd]) || !fp)
		return NULL;
	const struct file *f = bpf_rdonly_cast(fp, bpf_core_type_id_kernel(struct file));
	const struct socket *sock = bpf_rdonly_cast(f->private_data, bpf_core_type_id_kernel(struct socket));
	if (!sock || sock->file != fp || !sock->sk)
		return NULL;
	return bpf_rdonly_cast(sock->sk, bpf_core_type_id_kernel(struct sock));
}

/* accept() returned fd in the acceptor's context: remember the acceptor for the socket's next
 * transition, and tell user space at once (its live table and top then name it). */
static __always_inline int on_accept(long nfd)
{
	if (nfd < 0)
		return 0;
	struct task_struct *t = bpf_get_current_task_btf();
	const struct sock *sk = socket_of_fd(t, nfd);
	if (!sk || sk->sk_protocol != IPPROTO_TCP)
		return 0;
	__u16 family = sk->__sk_common.skc_family;
	if (family != AF_INET && family != AF_INET6)
		return 0;
	/* The cookie the transition program gave it at its handshake; 0 when it completed before
	 * we were attached (the dump_files walk names its holder instead). */
	__u64 cookie = sk->__sk_common.skc_cookie.counter;
	if (!cookie)
		return 0;
	struct accept_owner a = { .pid = t->tgid };
	process_comm(t, a.comm);
	bpf_map_update_elem(&accepted, &cookie, &a, BPF_ANY);

	struct tcpdwell_event ev = {};
	ev.type = TCPDWELL_EV_ACCEPT;
	ev.ts_ns = bpf_ktime_get_boot_ns();
	ev.cookie = cookie;
	ev.pid = a.pid;
	bpf_get_current_comm(&ev.comm, sizeof(ev.comm));
	ev.owner_pid = a.pid;
	__builtin_memcpy(ev.owner_comm, a.comm, sizeof(ev.owner_comm));
	ev.flags = TCPDWELL_F_OWNER_KNOWN | TCPDWELL_F_PROCESS_CTX;
	ev.new_state = sk->__sk_common.skc_state;
	ev.cgroup_id = sk_cgroup_id(sk);
	fill_common(&ev, &sk->__sk_common);
	ev.sport = sk_local_port(sk);
	if (wanted(&ev))
		emit(&ev);
	return 0;
}

/* Classic tracepoints (tracefs must be readable to attach them): off unless the tracer turns them on. */
SEC("?tp/syscalls/sys_exit_accept4")
int handle_accept4(struct trace_event_raw_sys_exit *ctx)
{
	return on_accept(ctx->ret);
}

SEC("?tp/syscalls/sys_exit_accept")
int handle_accept(struct trace_event_raw_sys_exit *ctx)
{
	return on_accept(ctx->ret);
}
