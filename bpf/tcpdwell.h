/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * tcpdwell.h — the ABI shared by the kernel program (bpf/tcpdwell.bpf.c) and the
 * TypeScript agent. This file is the single source of truth: src/kernel/abi.ts is
 * generated from the BTF that clang emits for these types (scripts/gen-abi.mjs), it is
 * committed, and test/unit/abi-drift.test.ts fails when the two disagree.
 *
 * Rules: fixed-width types only, largest first, explicit padding, unit and byte order
 * in every comment, and a static assert on every size.
 */
#ifndef TCPDWELL_H
#define TCPDWELL_H

/* What a record in the ring (or in the iter/tcp output) describes. */
enum tcpdwell_event_type {
	TCPDWELL_EV_TRANSITION = 1,     /* sock:inet_sock_set_state of a TCP socket */
	TCPDWELL_EV_TIMEWAIT_START = 2, /* a timewait sock was scheduled (timer:timer_start, tw_timer_handler) */
	TCPDWELL_EV_TIMEWAIT_END = 3,   /* the timewait sock ended: timer expired, or it was killed early */
	TCPDWELL_EV_SNAPSHOT = 4,       /* a socket that existed when tracing started (iter/tcp) */
	TCPDWELL_EV_RESET = 5,          /* an RST sent (tcp:tcp_send_reset) or received (tcp:tcp_receive_reset); reason says which */
	TCPDWELL_EV_ACCEPT = 6,         /* accept() handed the socket to a process (syscalls:sys_exit_accept4/accept): owner_* is
					 * the acceptor, pid/comm its thread; the socket's later events carry that owner */
};

/* Which way an RST went (RESET only, in tcpdwell_event.reason). */
enum tcpdwell_rst_direction {
	TCPDWELL_RST_SENT = 1,     /* this host sent it: an abort (close with unread data, SO_LINGER 0, ...) or the answer to a
				    * segment no socket wanted (then cookie 0, owner unknown, the addresses those of that segment) */
	TCPDWELL_RST_RECEIVED = 2, /* a full socket received it (tcp_reset): the peer aborted, or refused the connect */
};

/* How a timewait sock ended (TIMEWAIT_END only). */
enum tcpdwell_tw_reason {
	TCPDWELL_TW_EXPIRED = 1, /* its timer fired (timer:timer_expire_entry) */
	TCPDWELL_TW_KILLED = 2,  /* its timer was cancelled for good: netns deleted, port reuse, RST or SYN */
};

/* Bits of tcpdwell_event.flags. */
enum tcpdwell_event_flags {
	TCPDWELL_F_ENTERED_KNOWN = 1,   /* entered_ns is exact (the program saw the socket enter old_state) */
	TCPDWELL_F_OWNER_KNOWN = 2,     /* owner_pid/owner_comm were seen at a process-context transition */
	TCPDWELL_F_PROCESS_CTX = 4,     /* the current task holds the socket lock: pid/comm is the actor, not a bystander */
	TCPDWELL_F_CHILD = 8,           /* the socket was cloned from a listener (owner inherited from it) */
	TCPDWELL_F_GAP = 16,            /* a transition of this socket was missed before this one (the kernel
					 * skipped a nested run of the program): entered_ns is unknown */
	TCPDWELL_F_FLIP = 32,           /* on a TIMEWAIT_START: not a new timewait but the flip of a running one
					 * from substate FIN_WAIT2 (an orphan) to TIME_WAIT, at the peer's FIN
					 * (the kernel re-arms its timer); entered_ns is the timewait's start */
	TCPDWELL_F_RST_RECEIVED = 64,   /* on an X->CLOSE (not LISTEN->CLOSE): the socket received an RST before it (tcp:tcp_receive_reset) */
	TCPDWELL_F_RST_SENT = 128,      /* on an X->CLOSE: the socket sent an RST before it (tcp:tcp_send_reset); an
					 * abort that closes first and resets after (SO_LINGER 0, close with unread
					 * data) shows as its RESET record right after the close instead */
};

/*
 * Why an event never reached its consumer, wherever in the pipeline that happened. Nothing is
 * lost silently: each reason is counted. The names (lower case, without the prefix) are the
 * `reason` label of tcpdwell_events_lost_total, and what trace, run, top and agents report.
 */
enum tcpdwell_loss_reason {
	TCPDWELL_LOSS_RING_FULL = 1,      /* kernel: bpf_ringbuf_reserve failed, the ring buffer was full */
	TCPDWELL_LOSS_KERNEL_SKIPPED = 2, /* kernel: a run of the transition program was skipped, nested in one running on the same CPU */
	TCPDWELL_LOSS_MALFORMED = 3,      /* agent: a record that did not decode */
	TCPDWELL_LOSS_SPOOL_DROPPED = 4,  /* agent: a message dropped from the full spool, oldest first */
};

struct tcpdwell_event {
	__u64 ts_ns;       /* bpf_ktime_get_boot_ns() at the event, ns since boot (counts suspend) */
	__u64 cookie;      /* socket cookie (bpf_get_socket_cookie); the timewait sock carries its socket's */
	__u64 entered_ns;  /* boot-time ns at which the socket entered old_state (TRANSITION), the timewait
			    * started (TIMEWAIT_END) or the current state began (SNAPSHOT); 0 = unknown */
	__u64 expires_ns;  /* TIMEWAIT_START/END, SNAPSHOT of a timewait sock: boot-time ns its timer is due; else 0 */
	__u64 cgroup_id;   /* cgroup v2 id of the socket (sk->sk_cgrp_data), right in any context; 0 = unknown */
	__u32 netns;       /* inode of the socket's network namespace (as in /proc/PID/ns/net) */
	__u32 pid;         /* tgid of the current task; 0 in softirq on an idle CPU */
	__u32 owner_pid;   /* tgid seen at the socket's last process-context transition (or its listener's); 0 = unknown */
	__s32 error;       /* positive errno from sk_err (sock:inet_sk_error_report) that preceded this transition; 0 = none */
	__u8 saddr[16];    /* local address, network byte order; IPv4 in the first 4 bytes */
	__u8 daddr[16];    /* remote address, network byte order; IPv4 in the first 4 bytes */
	char comm[16];     /* comm of the current task, NUL-padded */
	char owner_comm[16]; /* comm of owner_pid, NUL-padded */
	__u16 sport;       /* local port, host byte order (0 before bind, e.g. at CLOSE->SYN_SENT) */
	__u16 dport;       /* remote port, host byte order */
	__u16 family;      /* AF_INET (2) or AF_INET6 (10) */
	__u8 type;         /* enum tcpdwell_event_type */
	__u8 old_state;    /* TRANSITION: kernel TCP_* state left; else 0 */
	__u8 new_state;    /* TRANSITION: state entered; SNAPSHOT: current state; TIMEWAIT_*: TCP_TIME_WAIT;
			    * RESET: the socket's state at the RST (0: no socket) */
	__u8 substate;     /* TIMEWAIT_*: tw_substate (TCP_TIME_WAIT or TCP_FIN_WAIT2); SNAPSHOT of a timewait sock too */
	__u8 reason;       /* TIMEWAIT_END: enum tcpdwell_tw_reason; RESET: enum tcpdwell_rst_direction; else 0 */
	__u8 flags;        /* enum tcpdwell_event_flags */
	/* A connection's vital signs, read from its tcp_sock at its closing transition (X->CLOSE: a
	 * TRANSITION with new_state TCP_CLOSE, old_state not TCP_LISTEN); 0 in every other record. Appended after the fields
	 * of the 136-byte layout (whose padding srtt_us takes), so a record of that layout is a
	 * prefix of this one. */
	__u32 srtt_us;        /* smoothed RTT, us (tcp_sock.srtt_us >> 3, as ss -ti shows rtt:); 0 = never measured */
	__u32 total_retrans;  /* segments retransmitted over its life (tcp_sock.total_retrans; ss -ti retrans:x/N, the N) */
	__u32 _pad;           /* zero */
	__u64 bytes_acked;    /* bytes the peer acknowledged (tcp_sock.bytes_acked, ss -ti bytes_acked:); Linux counts
			       * the active opener's SYN and an acked FIN as one byte each (test/kernel/vitals.test.ts) */
	__u64 bytes_received; /* bytes received in order (tcp_sock.bytes_received); a received FIN counts one */
};

/*
 * One TCP socket file held by a process, from the iter/task_file walks dump_files (every socket:
 * who holds it, as `ss -p` names it) and dump_listeners (listening sockets only, with their
 * queues: what the kernel offers about SYN pressure, since no tracepoint marks a SYN's arrival).
 * A socket shared by several processes (a listener inherited by prefork workers) comes once per
 * holder. Not a ring record: the iterator's output, read by runIterator.
 */
struct tcpdwell_sockfile {
	__u64 ts_ns;           /* bpf_ktime_get_boot_ns() at the walk, ns since boot */
	__u64 cookie;          /* socket cookie, as in struct tcpdwell_event */
	__u64 synack_retrans;  /* LISTEN: SYN-ACKs retransmitted to its half-open connections while this object's
				* programs (or, pinned, the agent's) were attached (tcp:tcp_retransmit_synack); else 0 */
	__u32 netns;           /* inode of the socket's network namespace */
	__u32 pid;             /* tgid of the process holding the file */
	__u32 fd;              /* the file's descriptor in that process */
	__u32 ack_backlog;     /* LISTEN: connections waiting in the accept queue (sk_ack_backlog; ss Recv-Q) */
	__u32 max_ack_backlog; /* LISTEN: the accept queue's bound (sk_max_ack_backlog: the listen(2) backlog capped by somaxconn; ss Send-Q) */
	__u32 request_socks;   /* LISTEN: half-open connections, request socks (icsk_accept_queue.qlen; ss SYN-RECV) */
	__u32 drops;           /* LISTEN: SYNs and completed handshakes it dropped, accept or SYN queue full (sk_drops: its part of ListenDrops) */
	__u16 sport;           /* local port, host byte order */
	__u16 family;          /* AF_INET (2) or AF_INET6 (10) */
	__u8 saddr[16];        /* local address, network byte order; IPv4 in the first 4 bytes */
	char comm[16];         /* the holder's process name: its thread group leader's comm (what ss -p and ps show), NUL-padded */
	__u8 state;            /* kernel TCP_* state */
	__u8 _pad[7];          /* zero */
};

/* Per-CPU counters (map "counters", one slot per CPU); the agent sums the CPUs. */
struct tcpdwell_counters {
	__u64 events;           /* records submitted to the ring */
	__u64 lost_ring_full;   /* records dropped because bpf_ringbuf_reserve failed (ring full) */
	__u64 lost_no_storage;  /* transitions whose sk_storage could not be created (dwell unknown) */
	__u64 tw_unmatched;     /* timewait starts emitted without their socket's close transition */
	__u64 filtered;         /* events not emitted because of the agent's filters */
	__u64 state_gaps;       /* transitions whose old state was not the state last seen entered: one was missed */
};

/* The filter configuration (map "dwell_config", one entry), written by the agent at start or run time. */
struct tcpdwell_config {
	__u32 wakeup_bytes;  /* wake the reader once this many bytes wait in the ring (else it polls) */
	__u16 family;        /* 0 = any; AF_INET or AF_INET6 = only that family */
	__u8 filter_netns;   /* 1 = emit only sockets whose netns inode is a key of map "netns_filter" */
	__u8 filter_ports;   /* 1 = emit only sockets whose sport or dport is a key of map "port_filter" */
};

/* Anchors the enums in the object's BTF so the generator can read them (never used at run time). */
struct tcpdwell_abi {
	enum tcpdwell_event_type type;
	enum tcpdwell_tw_reason reason;
	enum tcpdwell_rst_direction rst;
	enum tcpdwell_event_flags flags;
	enum tcpdwell_loss_reason loss;
	struct tcpdwell_sockfile sockfile;
};

_Static_assert(sizeof(struct tcpdwell_event) == 160, "tcpdwell_event layout changed: regenerate src/kernel/abi.ts");
_Static_assert(sizeof(struct tcpdwell_sockfile) == 96, "tcpdwell_sockfile layout changed: regenerate src/kernel/abi.ts");
_Static_assert(sizeof(struct tcpdwell_counters) == 48, "tcpdwell_counters layout changed");
_Static_assert(sizeof(struct tcpdwell_config) == 8, "tcpdwell_config layout changed");

#endif /* TCPDWELL_H */
