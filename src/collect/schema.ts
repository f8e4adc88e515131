/**
 * The store's tables and columns, in one place: the DuckDB and ClickHouse DDL, the row builders
 * (rows.ts) and docs/events.md ("The store") follow this list. Pure data.
 *
 * Identity: every row carries (host, boot_id, epoch, seq) — the agent message it came from —
 * and, in multi-row tables, `row`, its index in that message. A message is stored whole or not
 * at all, once (the `messages` table's key is the gate: store-duckdb.ts, store-clickhouse.ts),
 * so a redelivery or a second collector instance can never double a row.
 *
 * Times: `*_ns` columns are Unix-epoch nanoseconds (the agent's boot-time stamp plus its
 * boot_to_unix offset), integers in both stores (ClickHouse 18.16 has no DateTime64). States are
 * the kernel's names (ESTABLISHED, TIME_WAIT …), errors errno names (ECONNREFUSED), addresses text.
 */

export type ColumnType = 'str' | 'u8' | 'u16' | 'u32' | 'u64' | 'i64' | 'f64' | 'bool';

export interface Column {
  name: string;
  type: ColumnType;
  /** NULL allowed (an unknown value) */
  nullable?: boolean;
  /** few distinct values (states, kinds, names): dictionary-encoded where the store can */
  lowCardinality?: boolean;
  /**
   * added to a table after stores were made without it (nullable only): a store made before gets it
   * at open (ALTER TABLE … ADD COLUMN IF NOT EXISTS; its old rows read NULL)
   */
  added?: boolean;
  doc: string;
}

export interface Table {
  name: TableName;
  doc: string;
  columns: readonly Column[];
  /** the columns that identify a row (the gate's key for `messages`) */
  key: readonly string[];
  /** Unix-ns (or _ms) column that partitions by day in ClickHouse */
  timeColumn: string;
}

export type TableName = 'messages' | 'events' | 'dwell' | 'summaries' | 'alerts' | 'cgroups' | 'holes';

const id: Column[] = [
  { name: 'host', type: 'str', lowCardinality: true, doc: 'host id (the subject token)' },
  { name: 'boot_id', type: 'str', lowCardinality: true, doc: "the host's boot id" },
  { name: 'epoch', type: 'u32', doc: 'agent start number on this host' },
  { name: 'seq', type: 'u64', doc: 'message number within (host, boot_id, epoch)' },
];
const row: Column = { name: 'row', type: 'u32', doc: 'index of the row in its message' };
const socket: Column[] = [
  { name: 'cookie', type: 'u64', doc: "the kernel's socket cookie (unique per boot; a timewait shares its socket's)" },
  { name: 'netns', type: 'u32', doc: 'network namespace inode' },
  { name: 'cgroup_id', type: 'u64', doc: "the socket's cgroup v2 id (its container); 0 unknown" },
  { name: 'family', type: 'str', lowCardinality: true, doc: 'inet or inet6' },
  { name: 'saddr', type: 'str', doc: 'local address' },
  { name: 'sport', type: 'u16', doc: 'local port' },
  { name: 'daddr', type: 'str', doc: 'remote address' },
  { name: 'dport', type: 'u16', doc: 'remote port' },
  { name: 'owner_pid', type: 'u32', nullable: true, doc: 'owning process; NULL unknown' },
  { name: 'owner_comm', type: 'str', nullable: true, lowCardinality: true, doc: "owning process's name; NULL unknown" },
];

/** A connection's vital signs at its close (TcpEvent.vitals / DwellRecord.vitals): NULL on every other row. */
const vitals = (where: string): Column[] => [
  { name: 'srtt_us', type: 'u32', nullable: true, added: true, doc: `${where}: smoothed RTT at the close, µs (ss -ti rtt:; 0 never measured); else NULL` },
  { name: 'total_retrans', type: 'u32', nullable: true, added: true, doc: `${where}: segments retransmitted over its life (ss -ti retrans:x/N, the N); else NULL` },
  { name: 'bytes_acked', type: 'u64', nullable: true, added: true, doc: `${where}: bytes the peer acknowledged (ss -ti bytes_acked: the data, +1 for the active opener's SYN, +1 for an acked FIN); else NULL` },
  { name: 'bytes_received', type: 'u64', nullable: true, added: true, doc: `${where}: bytes received in order (ss -ti bytes_received: the data, +1 for a FIN); else NULL` },
  { name: 'reset_by', type: 'str', lowCardinality: true, nullable: true, added: true, doc: `${where}: sent or received, the RST that preceded the close; NULL none (an abort that resets after its close shows as its reset event)` },
];

const ID_KEY = ['host', 'boot_id', 'epoch', 'seq'];
/** A name from a small set (a state, an errno, a kind): a dictionary-encoded string. */
const label = (name: string, doc: string, nullable = false): Column => ({ name, type: 'str', lowCardinality: true, nullable, doc });

/** A table of one row per message (summaries, alerts): its identity is the message's. */
const perMessage = (name: TableName, doc: string, timeColumn: string, columns: Column[]): Table => ({ name, doc, columns: [...id, ...columns], key: ID_KEY, timeColumn });
/** A table of many rows per message (events, dwell): the message's identity and the row's place in it. */
const perRow = (name: TableName, doc: string, timeColumn: string, columns: Column[]): Table => ({ name, doc, columns: [...id, row, ...columns], key: [...ID_KEY, 'row'], timeColumn });

export const TABLES: readonly Table[] = [
  perMessage('messages', 'one row per agent message stored: the exactly-once gate, and what each message said about loss', 'sent_ns', [
      label('kind', 'transitions, snapshot, dwell, summary, alerts'),
      { name: 'rows', type: 'u32', doc: 'rows it holds (events, dwell records; 0 for summary and alerts)' },
      { name: 'boot_to_unix_ns', type: 'i64', doc: 'add to a boot-time stamp of this run for Unix ns' },
      { name: 'sent_ns', type: 'i64', doc: 'when the agent built it' },
      { name: 'stored_ms', type: 'i64', doc: 'when a collector stored it (Unix ms, collector clock)' },
      label('agent_version', 'agent version'),
      { name: 'drops', type: 'str', doc: "the agent's cumulative loss counters (Header.drops) as JSON" },
  ]),
  perRow('events', 'kernel events: every transition, timewait start and end, RST, accept() and snapshot row (what `tcpdwell trace` prints)', 'ts_ns', [
      { name: 'ts_ns', type: 'i64', doc: 'when it happened (snapshot: when the walk saw it)' },
      label('type', 'transition, timewait_start, timewait_end, snapshot, reset, accept'),
      ...socket,
      label('old_state', 'transition: the state left', true),
      label('new_state', 'the state entered (snapshot: current; timewait: TIME_WAIT)'),
      label('substate', 'timewait: TIME_WAIT or FIN_WAIT2', true),
      { name: 'dwell_ns', type: 'i64', nullable: true, doc: 'time in old_state (or in the timewait at its end; a snapshot: age in its state); NULL unknown' },
      { name: 'expires_ns', type: 'i64', nullable: true, doc: 'timewait: when its timer is due' },
      label('reason', 'timewait end: expired or killed; reset: sent or received (the RST\'s direction)', true),
      label('error', 'errno name reported before this transition (ECONNREFUSED …)', true),
      { name: 'pid', type: 'u32', doc: 'the task running at the event (in softirq often a bystander)' },
      label('comm', "that task's name"),
      { name: 'flags', type: 'u8', doc: 'bit 1 actor is the owner, 2 accepted child, 4 a transition was missed before (gap), 8 timewait flip' },
      ...vitals('transition to CLOSE'),
  ]),
  perRow('dwell', 'one row per state a socket left, and per timewait phase, with how far its duration can be trusted', 'left_ns', [
      { name: 'left_ns', type: 'i64', doc: 'when the state was left' },
      label('state', 'the state left (timewait phase: TIME_WAIT or FIN_WAIT2)'),
      { name: 'timewait', type: 'bool', doc: 'a phase of the timewait sock, after the application socket was gone' },
      { name: 'dwell_ns', type: 'i64', doc: 'time in the state' },
      label('precision', 'exact, lower_bound, estimated or upper_bound'),
      label('next_state', 'the state entered next (NULL: a timewait that ended)', true),
      label('timewait_end', 'timewait phase: expired or killed', true),
      label('error', 'errno name reported before the transition', true),
      ...socket,
      ...vitals('the state left at the close (next_state CLOSE, or the timewait it was handed to)'),
  ]),
  perMessage('summaries', "each host's periodic picture: live sockets per state, the oldest sockets, totals", 'at_ns', [
      { name: 'at_ns', type: 'i64', doc: 'when the agent took it' },
      { name: 'states', type: 'str', doc: 'live sockets per state, JSON {"ESTABLISHED": 12, …}' },
      { name: 'stuck', type: 'str', doc: 'the oldest sockets per state, JSON (as HostRecord.stuck)' },
      { name: 'events_total', type: 'u64', doc: 'events the agent ingested this epoch' },
  ]),
  perMessage('alerts', "the agents' detector alerts (firing and resolved)", 'at_ns', [
      { name: 'at_ns', type: 'i64', doc: 'when' },
      label('kind', 'the detector'),
      label('severity', 'firing or resolved'),
      { name: 'key', type: 'str', doc: 'stable while the condition lasts' },
      { name: 'message', type: 'str', doc: 'one line with the numbers' },
      { name: 'labels', type: 'str', doc: 'JSON object' },
      { name: 'value', type: 'f64', doc: 'the measured value' },
      { name: 'threshold', type: 'f64', doc: 'the threshold' },
  ]),
  perRow('cgroups', "what the agents' cgroup ids name, resolved on each agent's host: the dictionary each dwell batch and summary carries (a cgroup appears once per message that mentions it; join on host, boot_id, cgroup_id)", 'at_ns', [
      { name: 'at_ns', type: 'i64', doc: 'when the agent built the message' },
      { name: 'cgroup_id', type: 'u64', doc: 'the cgroup v2 id, as in the socket columns' },
      { name: 'path', type: 'str', doc: 'relative to the cgroup v2 root, e.g. /system.slice/docker-4f…e1.scope' },
      label('runtime', "docker, containerd, cri-o, podman, systemd; '' when none is recognised"),
      { name: 'container_id', type: 'str', doc: "the container id for a container runtime, else ''" },
      { name: 'pod_uid', type: 'str', doc: "the Kubernetes pod UID for a pod's containers, else ''" },
      { name: 'unit', type: 'str', doc: "the systemd unit the cgroup is or lies in, else ''" },
  ]),
  {
    name: 'holes',
    doc: 'agent messages declared lost: seqs from_seq..to_seq of a run that did not arrive within the grace (reported once)',
    columns: [
      label('host', 'host id'),
      label('boot_id', 'boot id'),
      { name: 'epoch', type: 'u32', doc: 'agent start number' },
      { name: 'from_seq', type: 'u64', doc: 'first missing seq' },
      { name: 'to_seq', type: 'u64', doc: 'last missing seq' },
      { name: 'since_ms', type: 'i64', doc: 'missing since (Unix ms, collector clock)' },
      { name: 'declared_ms', type: 'i64', doc: 'declared lost at (Unix ms)' },
      { name: 'instance', type: 'str', doc: 'the collector instance that declared it' },
    ],
    key: ['host', 'boot_id', 'epoch', 'from_seq'],
    timeColumn: 'declared_ms',
  },
];

/** The columns stores made before may lack, per table (see Column.added). */
export const addedColumns = (): { table: TableName; column: Column }[] => TABLES.flatMap((t) => t.columns.filter((c) => c.added).map((column) => ({ table: t.name, column })));

export const table = (name: TableName): Table => TABLES.find((t) => t.name === name)!;

/** A row: values in the table's column order (bigint for u64/i64, null where nullable). */
export type Row = (string | number | bigint | boolean | null)[];
