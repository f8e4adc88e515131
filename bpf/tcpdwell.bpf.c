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
	__u64 entered_ns; /* boot ns the socket entered its current state */
	__u64 cookie;     /* whose entry this is: differs after a clone from the listener */
	__u32 owner_pid;
	__s32 pending_err; /* sk_err from inet_sk_error_report, carried to the next transition */
	char owner_comm[16];
	__u8 state;        /* the state we saw it enter, to notice a transition we never saw */
	__u8 _pad[7];
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

/* True when the agent's filters let this event through. */
static __always_inline bool wanted(const struct tcpdwell_event *ev)
{
	const struct tcpdwell_config *cfg = get_config();
	if (!cfg)
		return true;
	if (cfg->family && cfg->family != ev->family)
		goto out;
	if (cfg->filter_netns && !bpf_map_lookup_elem(&netns_filter, &ev->netns))
		goto out;
	if (cfg->filter_ports && !bpf_map_lookup_elem(&port_filter, &ev->sport) &&
	    !bpf_map_lookup_elem(&port_filter, &ev->dport))
		goto out;
	return true;
out:;
	struct tcpdwell_counters *c = get_counters();
	if (c)
		c->filtered++;
	return false;
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
		si->cookie = cookie;
		si->pending_err = 0;
	}
	ev->error = si->pending_err;
	si->pending_err = 0;
	si->entered_ns = now;
	si->state = newstate;
	if (proc) {
		si->owner_pid = ev->pid;
		__builtin_memcpy(si->owner_comm, ev->comm, sizeof(si->owner_comm));
	}
	if (si->owner_pid) {
		ev->owner_pid = si->owner_pid;
		__builtin_memcpy(ev->owner_comm, si->owner_comm, sizeof(ev->owner_comm));
		ev->flags |= TCPDWELL_F_OWNER_KNOWN;
	}
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
	if (!ev->error && newstate == TCP_CLOSE)
		ev->error = sk->sk_err;
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
			if (ti) {
				e.entered_ns = ti->start_ns;
				e.flags |= TCPDWELL_F_ENTERED_KNOWN;
			}
		}
	} else if (e.new_state != TCP_NEW_SYN_RECV) {
		struct tcp_sock *tp = bpf_skc_to_tcp_sock(skc);
		if (tp) {
			struct sock *sk = (struct sock *)tp;
			e.cgroup_id = sk_cgroup_id(sk);
			struct sk_info *si = bpf_sk_storage_get(&sk_state, sk, 0, 0);
			if (si && si->cookie == e.cookie && si->state == e.new_state) {
				e.entered_ns = si->entered_ns;
				e.flags |= TCPDWELL_F_ENTERED_KNOWN;
				if (si->owner_pid) {
					e.owner_pid = si->owner_pid;
					__builtin_memcpy(e.owner_comm, si->owner_comm, sizeof(e.owner_comm));
					e.flags |= TCPDWELL_F_OWNER_KNOWN;
				}
			}
		}
	}
	if (wanted(&e))
		bpf_seq_write(ctx->meta->seq, &e, sizeof(e));
	return 0;
}
