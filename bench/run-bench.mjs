#!/usr/bin/env node
// `make bench` (issue 6): loopback connection churn in a network namespace of our own, with no
// tracer and under each contender, interleaved round-robin over several repetitions; then the
// user-space decode microbenchmark. Writes a results block into BENCHMARKS.md (replacing the block
// with the same label) and the raw numbers to bench/.output/results-<label>.json.
//
// Needs root. Installs libbpf-tools and bpftrace with apt-get when missing, mounts tracefs when
// needed (classic tracepoints: KERNEL-NOTES "What attaches here"). Only loopback, only inside the
// namespaces it creates, which it deletes after every run and on SIGINT/SIGTERM or failure.
//
// Configuration (environment; `make bench BENCH_REPS=1 BENCH_SECONDS=2` for a smoke run):
//   BENCH_REPS=5  BENCH_SECONDS=10  BENCH_COUNT=0 (connections per run; 0 = time only)
//   BENCH_RATE=0 (connections per second in all, paced by churn --rate; 0 = as fast as the CPUs
//     allow. 10000 = 100 k transition events/s in the close-first modes, issue 6's latency target)
//   BENCH_CALM_SECONDS=0 BENCH_CALM_RATE=1000: the storm scenario — each run is first this long at this
//     paced rate (calm), then BENCH_SECONDS at BENCH_RATE (the storm; unpaced by default), in the same
//     namespace under the same tracer; loss counts both, conn/s is the storm's
//     (`make bench-storm`: 30 s calm at 1,000 conn/s, then 10 s unpaced)
//   BENCH_FLUSH_MS= (tcpdwell run --flush-interval in ms; unset = the agent's default, 50 ms)
//   BENCH_MODES=client-first (comma list: client-first, server-first, rst)
//   BENCH_CONTENDERS=none,tcpdwell-trace,tcpdwell-raw,tcpdwell-kernel,tcpdwell-run,tcpstates,bpftrace  BENCH_THREADS=<nproc>
//     (also tcpdwell-run-4m: the agent with the 4 MiB ring it had before issue 13)
//   BENCH_PIPELINE=0 to skip the pipeline microbenchmark (bench/pipeline-bench.mjs on the last
//   tcpdwell-raw recording; one 3 s recording run is made when tcpdwell-raw is not a contender)
//   BENCH_ADDRS=8  BENCH_PORTS=8 (destinations per thread: 127.0.0.1..N x ports)
//   BENCH_MAX_TW=1048576 (tcp_max_tw_buckets in the namespace)  BENCH_TW_REUSE=1
//   BENCH_DECODE_RECORDS=1000000  BENCH_DECODE=0 to skip the microbenchmark
//   BENCH_PROFILE=1: one extra tcpdwell trace run under the V8 profiler, summarized (not in the table);
//     BENCH_PROFILE=<contender> (e.g. tcpdwell-run) profiles that tcpdwell contender instead
//   BENCH_KEEP_RECORDING=<path>: copy the raw recording there (for bench/pipeline-bench.mjs by hand)
//   BENCH_LABEL=latest (names the block in BENCHMARKS.md)  BENCH_NOTE="..." (a line in the block)
import { spawn, execFileSync, spawnSync } from 'node:child_process';
import { closeSync, copyFileSync, createReadStream, existsSync, openSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { CHURN, cleanupOnExit, OUT_DIR, ROOT, TCPDWELL } from './common.mjs';

const env = process.env;
const num = (name, dflt) => (env[name] !== undefined && env[name] !== '' ? Number(env[name]) : dflt);

const cfg = {
  reps: num('BENCH_REPS', 5),
  seconds: num('BENCH_SECONDS', 10),
  count: num('BENCH_COUNT', 0),
  rate: num('BENCH_RATE', 0),
  calmSeconds: num('BENCH_CALM_SECONDS', 0),
  calmRate: num('BENCH_CALM_RATE', 1000),
  flushMs: num('BENCH_FLUSH_MS', null),
  modes: (env.BENCH_MODES || 'client-first').split(',').filter(Boolean),
  contenders: (env.BENCH_CONTENDERS || 'none,tcpdwell-trace,tcpdwell-raw,tcpdwell-kernel,tcpdwell-run,tcpstates,bpftrace').split(',').filter(Boolean),
  pipeline: env.BENCH_PIPELINE !== '0',
  threads: num('BENCH_THREADS', cpus().length),
  addrs: num('BENCH_ADDRS', 8),
  ports: num('BENCH_PORTS', 8),
  basePort: 20000,
  maxTw: num('BENCH_MAX_TW', 1048576),
  twReuse: num('BENCH_TW_REUSE', 1),
  decode: env.BENCH_DECODE !== '0',
  profile: env.BENCH_PROFILE === '1' ? 'tcpdwell-trace' : env.BENCH_PROFILE?.startsWith('tcpdwell-') ? env.BENCH_PROFILE : null,
  label: env.BENCH_LABEL || 'latest',
  note: env.BENCH_NOTE || '',
};
const PORT_LO = cfg.basePort;
const PORT_HI = cfg.basePort + cfg.threads * cfg.ports - 1;
const NETNS = `tcpdwell-bench-${process.pid}`;
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
const EVENTS_PER_CONN = { 'client-first': 10, 'server-first': 10, rst: 6 };

// The peers' one-liner (KERNEL-NOTES "Peers, measured here"): one line per TCP event, to a file.
const BPFTRACE_PROG =
  'tracepoint:sock:inet_sock_set_state /args->protocol == 6/ ' +
  '{ printf("%d %d %d %d\\n", args->sport, args->dport, args->oldstate, args->newstate); }';

const log = (...a) => console.error('bench:', ...a);

// ---- contenders ----------------------------------------------------------------------------
// One entry per contender: how to start it, when it is attached, and how to count what it wrote.
// Optional hooks (used by tcpdwell-run): `setup(ctx)` starts what it needs before it (a NATS server,
// a subscriber), `drainPath(ctx)` names the file whose growth means "still delivering",
// `sidecars(ctx)` lists other processes whose CPU and RSS are measured in the same window,
// `teardown(ctx)` stops and removes what setup made (also on failure).
const RUN_HOST = 'bench';
const CONTENDERS = {
  none: { label: 'no tracer' },
  'tcpdwell-trace': {
    label: '`tcpdwell trace` → file',
    argv: (ctx) => [TCPDWELL, 'trace', '--format', 'json', '--no-snapshot', '--netns', ctx.netns],
    readyLine: /tracing TCP state transitions/,
    count: countTcpdwell,
    // "tcpdwell trace: N events seen, M lost (R ring full, K malformed)"
    summary: (stderr) => {
      const m = /(\d+) events seen, (\d+) lost \((\d+) ring full, (\d+) malformed/.exec(stderr);
      return m ? { seen: +m[1], lost: +m[2], ringFull: +m[3], malformed: +m[4] } : null;
    },
  },
  // The cheapest capture: kernel records to a file undecoded (`trace --format raw`); its output
  // is also the recording the pipeline microbenchmark replays.
  'tcpdwell-raw': {
    label: '`tcpdwell trace --format raw` → file',
    argv: (ctx) => [TCPDWELL, 'trace', '--format', 'raw', '--no-snapshot', '--netns', ctx.netns],
    readyLine: /tracing TCP state transitions/,
    count: countRaw,
    summary: (stderr) => CONTENDERS['tcpdwell-trace'].summary(stderr),
  },
  // The same kernel programs with a port filter nothing matches: all the kernel-side work
  // (socket storage, owner, timewait timers) is done and every record is dropped at emit, so
  // user space gets nothing. Separates the kernel's cost from the agent's.
  'tcpdwell-kernel': {
    label: '`tcpdwell trace --port 9` (kernel side only)',
    argv: (ctx) => [TCPDWELL, 'trace', '--format', 'json', '--no-snapshot', '--netns', ctx.netns, '--port', '9'],
    readyLine: /tracing TCP state transitions/,
    count: countTcpdwell,
    kernelOnly: true,
    summary: (stderr) => CONTENDERS['tcpdwell-trace'].summary(stderr),
  },
  // The full agent: decode, tracker, dwell records, spool, JetStream publish to a nats-server of
  // our own (fresh per run, free loopback port, JetStream in the run's temp dir), so that its CPU is
  // measured apart from the agent's. Filtered to the bench namespace (--netns), so everything in the
  // stream is bench traffic. Captured = transitions in the stream after the run (what reached
  // JetStream); loss counters = the kernel's, from the message headers. A core-NATS subscriber
  // (bench/nats-bench.mjs sub) measures event time → receipt for every event.
  'tcpdwell-run': {
    label: '`tcpdwell run` → NATS (agent process)',
    run: true,
    setup: async (ctx) => {
      const { startLocalNats } = await import(join(ROOT, 'dist/publish/nats-server.js'));
      ctx.pinDir = `/sys/fs/bpf/tcpdwell-bench-${process.pid}-${ctx.runIndex}`;
      pinDirs.add(ctx.pinDir);
      ctx.spoolDir = join(ctx.dir, `spool-${ctx.runIndex}`);
      ctx.nats = await startLocalNats({ storeDir: join(ctx.dir, `nats-${ctx.runIndex}`) });
      live.add(ctx.nats.process);
      ctx.subOut = join(ctx.dir, `${ctx.name}.sub`);
      const sub = spawn('node', [join(ROOT, 'bench/nats-bench.mjs'), 'sub', ctx.nats.url, `tcpdwell.v1.${RUN_HOST}.transitions`], {
        stdio: ['ignore', ctx.openOut(ctx.subOut), 'pipe'],
      });
      live.add(sub);
      ctx.sub = { child: sub, stderr: '', exited: new Promise((r) => sub.on('exit', r)) };
      sub.stderr.setEncoding('utf8');
      sub.stderr.on('data', (d) => (ctx.sub.stderr += d));
      const deadline = Date.now() + 20_000;
      while (!ctx.sub.stderr.includes('subscribed')) {
        if (sub.exitCode !== null || Date.now() > deadline) throw new Error(`latency subscriber did not start: ${ctx.sub.stderr.trim()}`);
        await sleep(50);
      }
    },
    argv: (ctx) => [
      TCPDWELL, 'run', '--nats', ctx.nats.url, '--host', RUN_HOST, '--netns', ctx.netns,
      '--spool-dir', ctx.spoolDir, '--pin-dir', ctx.pinDir, '--status-interval', '3600', '--create-stream',
      ...(cfg.flushMs ? ['--flush-interval', String(cfg.flushMs / 1000)] : []),
    ],
    readyLine: /publishing to tcpdwell\.v1\./,
    drainPath: (ctx) => ctx.subOut,
    sidecars: (ctx) => ({ nats: ctx.nats.process.pid, sub: ctx.sub.child.pid }),
    // After the agent has stopped (it drains its spool into NATS before exiting).
    count: async (_path, ctx, r) => {
      ctx.sub.child.kill('SIGTERM');
      await Promise.race([ctx.sub.exited, sleep(30_000)]);
      const last = readFileSync(ctx.subOut, 'utf8').trim().split('\n').pop() ?? '';
      r.latency = last.startsWith('result ') ? JSON.parse(last.slice(7)) : null;
      const out = await new Promise((resolve, reject) => {
        const child = spawn('node', [join(ROOT, 'bench/nats-bench.mjs'), 'count', ctx.nats.url, RUN_HOST, String(PORT_LO), String(PORT_HI)], { stdio: ['ignore', 'pipe', 'pipe'] });
        live.add(child);
        let o = '';
        let e = '';
        child.stdout.on('data', (d) => (o += d));
        child.stderr.on('data', (d) => (e += d));
        child.on('exit', (code) => {
          live.delete(child);
          code === 0 ? resolve(o) : reject(new Error(`counting the stream failed (${code}): ${e.trim()}`));
        });
      });
      r.stream = JSON.parse(out.trim().split('\n').pop());
      r.drops = r.stream.drops;
      return { transitions: r.stream.transitions, timewaitStart: r.stream.timewaitStart, timewaitEnd: r.stream.timewaitEnd, other: r.stream.otherPorts };
    },
    // "tcpdwell run: stopped: N events in M messages, P published, spool S (B B), lost: R ring full, K malformed, D spool-dropped"
    summary: (stderr) => {
      const m = /stopped: (\d+) events in (\d+) messages, (\d+) published, spool (\d+) \((\d+) B\), lost: (\d+) ring full, (\d+) malformed, (\d+) spool-dropped/.exec(stderr);
      return m ? { seen: +m[1], messages: +m[2], published: +m[3], spoolLeft: +m[4], lost: +m[6] + +m[7] + +m[8], ringFull: +m[6], malformed: +m[7], spoolDropped: +m[8] } : null;
    },
    teardown: async (ctx) => {
      if (ctx.sub && ctx.sub.child.exitCode === null && ctx.sub.child.signalCode === null) ctx.sub.child.kill('SIGKILL');
      if (ctx.sub) live.delete(ctx.sub.child);
      if (ctx.nats) {
        await ctx.nats.stop().catch(() => {});
        live.delete(ctx.nats.process);
        rmSync(ctx.nats.storeDir, { recursive: true, force: true });
      }
      if (ctx.pinDir) {
        rmSync(ctx.pinDir, { recursive: true, force: true });
        pinDirs.delete(ctx.pinDir);
      }
      if (ctx.spoolDir) rmSync(ctx.spoolDir, { recursive: true, force: true });
      if (ctx.subOut) rmSync(ctx.subOut, { force: true });
    },
  },
  tcpstates: {
    label: 'libbpf-tools `tcpstates` → file',
    argv: () => ['/usr/sbin/tcpstates'],
    count: countTcpstates,
  },
  bpftrace: {
    label: '`bpftrace` one-liner → file',
    argv: () => ['bpftrace', '-e', BPFTRACE_PROG],
    count: countBpftrace,
  },
};
// The agent with the ring size it had before issue 13 (4 MiB), to compare in the same run.
CONTENDERS['tcpdwell-run-4m'] = {
  ...CONTENDERS['tcpdwell-run'],
  label: '`tcpdwell run --ring-bytes 4MiB` (the earlier default ring)',
  argv: (ctx) => [...CONTENDERS['tcpdwell-run'].argv(ctx), '--ring-bytes', String(4 << 20)],
};

// ---- small helpers -------------------------------------------------------------------------
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (xs) => {
  const s = xs.filter((x) => x !== null && Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return null;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const sh = (cmd, args, opts = {}) => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...opts });
const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;

function procCpuS(pid) {
  // utime and stime are fields 14 and 15; comm (field 2) may hold spaces, so split after ")".
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}
const procStatus = (pid, key) => {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : null;
};
function hostCpu() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = f[3] + f[4];
  return { idle, total: f.reduce((a, b) => a + b, 0) };
}
const busyPct = (a, b) => (b.total === a.total ? 0 : 100 * (1 - (b.idle - a.idle) / (b.total - a.total)));

async function forEachLine(path, fn) {
  let rest = '';
  for await (const chunk of createReadStream(path, { encoding: 'utf8', highWaterMark: 1 << 20 })) {
    const lines = (rest + chunk).split('\n');
    rest = lines.pop();
    for (const l of lines) fn(l);
  }
  if (rest) fn(rest);
}

const inRange = (p) => p >= PORT_LO && p <= PORT_HI;
// The listeners' own CLOSE->LISTEN and LISTEN->CLOSE happen once per run, not per connection.
const isListenerEvent = (o, n) => (o === 'CLOSE' && n === 'LISTEN') || (o === 'LISTEN' && n === 'CLOSE');

async function countTcpdwell(path) {
  // Already filtered to the bench namespace by --netns. Substring tests: parsing a million JSON
  // lines would take longer than the run.
  const c = { transitions: 0, timewaitStart: 0, timewaitEnd: 0, other: 0 };
  await forEachLine(path, (l) => {
    if (l.includes('"type":"transition"')) {
      if (!l.includes('"oldState":"CLOSE","newState":"LISTEN"') && !l.includes('"oldState":"LISTEN","newState":"CLOSE"')) c.transitions++;
    } else if (l.includes('"type":"timewait_start"')) c.timewaitStart++;
    else if (l.includes('"type":"timewait_end"')) c.timewaitEnd++;
    else if (l) c.other++;
  });
  return c;
}

async function countRaw(path) {
  const { decodeRingBatch } = await import(join(ROOT, 'dist/decode/index.js'));
  const c = { transitions: 0, timewaitStart: 0, timewaitEnd: 0, other: 0 };
  const stats = { records: 0, malformed: 0 };
  decodeRingBatch(readFileSync(path), (e) => {
    if (e.type === 'transition') {
      if (!isListenerEvent(e.oldState, e.newState)) c.transitions++;
    } else if (e.type === 'timewait_start') c.timewaitStart++;
    else if (e.type === 'timewait_end') c.timewaitEnd++;
    else c.other++;
  }, stats);
  c.other += stats.malformed;
  return c;
}

async function countTcpstates(path) {
  // SKADDR C-PID C-COMM LADDR LPORT RADDR RPORT OLDSTATE -> NEWSTATE MS (C-COMM may hold spaces)
  const c = { transitions: 0, other: 0 };
  await forEachLine(path, (l) => {
    const t = l.trim().split(/\s+/);
    const i = t.lastIndexOf('->');
    if (i < 5) return;
    const lport = Number(t[i - 4]);
    const rport = Number(t[i - 2]);
    if (!inRange(lport) && !inRange(rport)) return void c.other++;
    if (!isListenerEvent(t[i - 1], t[i + 1])) c.transitions++;
  });
  return c;
}

async function countBpftrace(path) {
  const TCP_CLOSE = 7;
  const TCP_LISTEN = 10;
  const c = { transitions: 0, other: 0 };
  await forEachLine(path, (l) => {
    const m = /^(\d+) (\d+) (\d+) (\d+)$/.exec(l);
    if (!m) return;
    const [sport, dport, o, n] = [+m[1], +m[2], +m[3], +m[4]];
    if (!inRange(sport) && !inRange(dport)) return void c.other++;
    if (!((o === TCP_CLOSE && n === TCP_LISTEN) || (o === TCP_LISTEN && n === TCP_CLOSE))) c.transitions++;
  });
  return c;
}

// ---- set-up and clean-up -------------------------------------------------------------------
const live = new Set(); // child processes to stop on the way out
const pinDirs = new Set(); // bpffs directories of tcpdwell run, removed on the way out (never /sys/fs/bpf/tcpdwell)
let netnsUp = false;

function netnsCreate() {
  sh('ip', ['netns', 'add', NETNS]);
  netnsUp = true;
  sh('ip', ['-n', NETNS, 'link', 'set', 'lo', 'up']);
  // tcp_tw_reuse: a TIME_WAIT 4-tuple may be taken over by a new connect after
  // tcp_tw_reuse_delay (1 s); 2 (the default) means the same on loopback, set it anyway.
  // tcp_max_tw_buckets: at the default 131072 the table overflows after ~3 s of client-first
  // churn and the kernel then skips TIME_WAIT altogether (a different workload mid-run).
  for (const s of [`net.ipv4.tcp_tw_reuse=${cfg.twReuse}`, `net.ipv4.tcp_max_tw_buckets=${cfg.maxTw}`]) {
    sh('ip', ['netns', 'exec', NETNS, 'sysctl', '-qw', s]);
  }
}

function netnsDelete() {
  if (!netnsUp) return;
  netnsUp = false;
  try {
    execFileSync('ip', ['netns', 'del', NETNS], { stdio: 'ignore' });
  } catch {
    // already gone
  }
}

function cleanup() {
  for (const p of live) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // exited meanwhile
    }
  }
  for (const d of pinDirs) rmSync(d, { recursive: true, force: true });
  netnsDelete();
}

cleanupOnExit(cleanup, log, NETNS);

function ensureTools() {
  if (process.getuid() !== 0) throw new Error('make bench needs root (BPF, network namespaces, apt-get)');
  if (!existsSync(CHURN)) throw new Error(`${CHURN} is missing: run make bench (it builds bench/churn.c)`);
  const missing = [];
  if (cfg.contenders.includes('tcpstates') && !existsSync('/usr/sbin/tcpstates')) missing.push('libbpf-tools');
  if (cfg.contenders.includes('bpftrace') && !has('bpftrace')) missing.push('bpftrace');
  if (!has('taskset')) missing.push('util-linux');
  if (missing.length) {
    log(`installing ${missing.join(' ')} (apt-get)`);
    const r = spawnSync('sh', ['-c', `apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ${missing.join(' ')} >/dev/null`], { stdio: 'inherit' });
    if (r.status !== 0) throw new Error(`apt-get install ${missing.join(' ')} failed`);
  }
  // tcpstates and bpftrace attach classic tracepoints, which need tracefs for the event ids.
  if (!existsSync('/sys/kernel/tracing/events') && !existsSync('/sys/kernel/debug/tracing/events')) {
    log('mounting tracefs on /sys/kernel/tracing');
    sh('mount', ['-t', 'tracefs', 'tracefs', '/sys/kernel/tracing']);
  }
}

function versions() {
  const v = { node: process.version };
  const tryRun = (k, cmd, args) => {
    try {
      v[k] = sh(cmd, args).trim().split('\n')[0];
    } catch (e) {
      v[k] = (e.stdout || e.stderr || '').toString().trim().split('\n')[0] || 'unknown';
    }
  };
  tryRun('bpftrace', 'bpftrace', ['--version']);
  try {
    v.libbpfTools = sh('dpkg-query', ['-W', '-f', '${Version}', 'libbpf-tools']).trim();
  } catch {
    v.libbpfTools = 'unknown';
  }
  return v;
}

function machine() {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  return {
    kernel: sh('uname', ['-r']).trim(),
    nproc: cpus().length,
    cpu: /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? 'unknown',
    memGiB: (totalmem() / 2 ** 30).toFixed(1),
    hz: (() => {
      try {
        return /^CONFIG_HZ=(\d+)/m.exec(readFileSync(`/boot/config-${sh('uname', ['-r']).trim()}`, 'utf8'))?.[1] ?? null;
      } catch {
        return null;
      }
    })(),
  };
}
const uptimeLine = () => sh('uptime', []).trim();

// ---- one measured run ----------------------------------------------------------------------
function startTracer(c, ctx, argvOverride) {
  const argv = argvOverride ?? c.argv(ctx);
  const out = { path: join(ctx.dir, `${ctx.name}.out`), stderr: '' };
  const outFd = ctx.openOut(out.path);
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', outFd, 'pipe'] });
  live.add(child);
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => (out.stderr += d));
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return { child, out, exited };
}

// Attached = it printed its ready line, or (no such line) a BPF link or perf event is open in
// the process, then a margin for the remaining attach calls.
async function waitReady(c, t) {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (t.child.exitCode !== null) throw new Error(`${t.child.spawnfile} exited early: ${t.out.stderr.trim()}`);
    if (c.readyLine) {
      if (c.readyLine.test(t.out.stderr)) return;
    } else {
      try {
        const fds = readdirSync(`/proc/${t.child.pid}/fd`).map((fd) => {
          try {
            return readlinkSync(`/proc/${t.child.pid}/fd/${fd}`);
          } catch {
            return '';
          }
        });
        if (fds.some((l) => l.includes('bpf_link') || l.includes('[perf_event]')) && fds.some((l) => l.includes('bpf-prog'))) {
          await sleep(500);
          return;
        }
      } catch {
        // not there yet
      }
    }
    await sleep(50);
  }
  throw new Error(`${t.child.spawnfile} did not attach within 60 s`);
}

// Wait until the output file stops growing (the tracer has caught up), at most 60 s.
async function waitDrained(path) {
  let last = -1;
  let stableSince = Date.now();
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const size = existsSync(path) ? statSync(path).size : 0;
    if (size !== last) {
      last = size;
      stableSince = Date.now();
    } else if (Date.now() - stableSince >= 700) return;
    await sleep(100);
  }
}

// With BENCH_CALM_SECONDS (the storm scenario), a calm phase at BENCH_CALM_RATE comes first, in the
// same namespace and under the same tracer; the result is the storm phase's (its rate), with the
// connections of both (so expected events count both) and the calm phase's own figures under `calm`.
async function runChurn(mode) {
  if (!cfg.calmSeconds) return churnOnce(mode, cfg.seconds, cfg.rate);
  const calm = await churnOnce(mode, cfg.calmSeconds, cfg.calmRate);
  const storm = await churnOnce(mode, cfg.seconds, cfg.rate);
  return { ...storm, connections: calm.connections + storm.connections, failedConnects: calm.failedConnects + storm.failedConnects, calm: { connections: calm.connections, connPerS: calm.connPerS, durationS: calm.durationS } };
}

async function churnOnce(mode, seconds, rate) {
  const args = ['netns', 'exec', NETNS, CHURN, '--mode', mode, '--threads', String(cfg.threads), '--duration', String(seconds), '--addrs', String(cfg.addrs), '--ports', String(cfg.ports), '--base-port', String(cfg.basePort)];
  if (cfg.count) args.push('--count', String(cfg.count));
  if (rate) args.push('--rate', String(rate));
  const child = spawn('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const code = await new Promise((r) => child.on('exit', r));
  live.delete(child);
  if (code !== 0) throw new Error(`churn failed (${code}): ${stderr.trim()}`);
  return JSON.parse(stdout.trim().split('\n').pop());
}

// Let the previous run's namespace clean-up (kworker) finish before the next one starts.
async function settle() {
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    const a = hostCpu();
    await sleep(300);
    if (busyPct(a, hostCpu()) < 30) return;
  }
}

let runIndex = 0;
async function measure(name, mode, dir, opts = {}) {
  const c = CONTENDERS[name];
  await settle();
  netnsCreate();
  const fds = [];
  // A tracer's stdout goes straight to a file (no pipe through us).
  const ctx = {
    name,
    netns: NETNS,
    dir,
    runIndex: runIndex++,
    openOut: (p) => {
      const fd = openSync(p, 'w');
      fds.push(fd);
      return fd;
    },
  };
  let t = null;
  try {
    if (c.setup) await c.setup(ctx);
    if (c.argv) {
      t = startTracer(c, ctx, opts.argv?.(ctx));
      await waitReady(c, t);
    }
    const cpu0 = t ? procCpuS(t.child.pid) : 0;
    const sidecars = c.sidecars?.(ctx) ?? {};
    const sideCpu0 = Object.fromEntries(Object.entries(sidecars).map(([k, pid]) => [k, procCpuS(pid)]));
    const host0 = hostCpu();
    const churn = await runChurn(mode);
    const host1 = hostCpu();
    const r = { contender: name, mode, churn, connPerS: churn.connPerS, hostBusyPct: Number(busyPct(host0, host1).toFixed(1)) };
    r.expected = churn.connections * EVENTS_PER_CONN[mode] + churn.failedConnects * 2;
    if (t) {
      await waitDrained(c.drainPath ? c.drainPath(ctx) : t.out.path);
      r.tracerCpuS = procCpuS(t.child.pid) - cpu0;
      r.peakRssKiB = procStatus(t.child.pid, 'VmHWM');
      r.sidecars = Object.fromEntries(
        Object.entries(sidecars).map(([k, pid]) => [k, { cpuS: procCpuS(pid) - sideCpu0[k], peakRssKiB: procStatus(pid, 'VmHWM') }]),
      );
      t.child.kill('SIGINT');
      const ex = await Promise.race([t.exited, sleep(60_000).then(() => null)]);
      if (!ex) {
        t.child.kill('SIGKILL');
        throw new Error(`${name} did not exit within 60 s of SIGINT`);
      }
      live.delete(t.child);
      r.exit = ex;
      r.stderrTail = t.out.stderr.trim().split('\n').slice(-3).join(' | ');
      r.summary = c.summary?.(t.out.stderr) ?? null;
      r.outBytes = statSync(t.out.path).size;
      r.captured = await c.count(t.out.path, ctx, r);
      // Every event the tracer handled, for CPU per event: its own count when it has one.
      r.eventsHandled = r.summary?.seen ?? r.captured.transitions + (r.captured.other ?? 0);
      // Kernel-only: nothing reaches user space by design; its CPU is per event the kernel handled.
      r.lossPct = c.kernelOnly ? null : (100 * (r.expected - r.captured.transitions)) / r.expected;
      r.cpuNsPerEvent = c.kernelOnly ? (r.tracerCpuS * 1e9) / r.expected : r.eventsHandled ? (r.tracerCpuS * 1e9) / r.eventsHandled : null;
      for (const s of Object.values(r.sidecars)) s.cpuNsPerEvent = r.eventsHandled ? (s.cpuS * 1e9) / r.eventsHandled : null;
      // The raw recording is kept (the last one) for the pipeline microbenchmark; other outputs go.
      if (name === 'tcpdwell-raw') renameSync(t.out.path, join(dir, 'recording.ring'));
      else rmSync(t.out.path, { force: true });
    }
    return r;
  } finally {
    if (t && t.child.exitCode === null && t.child.signalCode === null) t.child.kill('SIGKILL');
    if (c.teardown) await c.teardown(ctx);
    for (const fd of fds) closeSync(fd);
    netnsDelete();
  }
}

// ---- profile of tcpdwell trace under load (BENCH_PROFILE=1) --------------------------------
function summarizeCpuProfile(dir) {
  const f = readdirSync(dir).find((x) => x.endsWith('.cpuprofile'));
  if (!f) throw new Error('no CPU profile was written');
  const p = JSON.parse(readFileSync(join(dir, f), 'utf8'));
  const hits = new Map();
  for (const s of p.samples) hits.set(s, (hits.get(s) ?? 0) + 1);
  const usPerSample = (p.endTime - p.startTime) / p.samples.length;
  const self = new Map();
  let total = 0;
  for (const n of p.nodes) {
    const h = hits.get(n.id) ?? 0;
    if (!h) continue;
    const url = n.callFrame.url.replace(/^.*\//, '');
    const key = `${n.callFrame.functionName || '(anonymous)'}${url ? ` ${url}:${n.callFrame.lineNumber + 1}` : ''}`;
    self.set(key, (self.get(key) ?? 0) + h * usPerSample);
    if (n.callFrame.functionName !== '(idle)') total += h * usPerSample;
  }
  const top = [...self].filter(([k]) => !k.startsWith('(idle)')).sort((a, b) => b[1] - a[1]).slice(0, 15);
  return { busyMs: total / 1000, top: top.map(([fn, us]) => ({ fn, ms: Number((us / 1000).toFixed(1)), pct: Number(((100 * us) / total).toFixed(1)) })) };
}

// ---- report ----------------------------------------------------------------------------------
const fmt = (x, d = 0) => (x === null || x === undefined || !Number.isFinite(x) ? '—' : x.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }));

// tcpdwell run only: the NATS side, the latency subscriber and the loss counters in the headers.
function summarizeRun(rs) {
  const med = (f) => median(rs.map((r) => { try { return f(r); } catch { return null; } }));
  const max = (f) => Math.max(...rs.map((r) => { try { return f(r) ?? -Infinity; } catch { return -Infinity; } }));
  const dropKeys = [...new Set(rs.flatMap((r) => Object.keys(r.drops ?? {})))];
  return {
    // Events the agent published per second of churn (transitions + timewait), and the subscriber's
    // median over whole seconds of event time.
    eventsPerS: med((r) => r.summary.seen / r.churn.durationS),
    transitionsPerS: med((r) => r.captured.transitions / r.churn.durationS),
    subEventsPerS: med((r) => r.latency.eventsPerSecond.median),
    subEvents: med((r) => r.latency.events),
    published: med((r) => r.summary.seen),
    p50Ms: med((r) => r.latency.latencyUs.p50 / 1000),
    p99Ms: med((r) => r.latency.latencyUs.p99 / 1000),
    worstP99Ms: max((r) => r.latency.latencyUs.p99 / 1000),
    maxMs: max((r) => r.latency.latencyUs.max / 1000),
    agentPartP50Ms: med((r) => r.latency.agentPartUs.p50 / 1000),
    agentPartP99Ms: med((r) => r.latency.agentPartUs.p99 / 1000),
    transitP99Ms: med((r) => r.latency.transitUs.p99 / 1000),
    eventsPerMessage: med((r) => r.latency.eventsPerMessage),
    natsCpuNsPerEvent: med((r) => r.sidecars.nats.cpuNsPerEvent),
    natsCpuPct: med((r) => (100 * r.sidecars.nats.cpuS) / r.churn.durationS),
    natsRssMiB: max((r) => r.sidecars.nats.peakRssKiB / 1024),
    subCpuNsPerEvent: med((r) => r.sidecars.sub.cpuNsPerEvent),
    subCpuPct: med((r) => (100 * r.sidecars.sub.cpuS) / r.churn.durationS),
    dwellRecords: med((r) => r.stream.dwellRecords),
    streamMiB: med((r) => Object.values(r.stream.bytes).reduce((a, b) => a + b, 0) / 2 ** 20),
    drops: Object.fromEntries(dropKeys.map((k) => [k, med((r) => r.drops?.[k] ?? 0)])),
  };
}

function summarize(results) {
  const rows = [];
  for (const mode of cfg.modes) {
    const base = median(results.filter((r) => r.mode === mode && r.contender === 'none').map((r) => r.connPerS));
    for (const name of cfg.contenders) {
      const rs = results.filter((r) => r.mode === mode && r.contender === name);
      if (!rs.length) continue;
      const cps = median(rs.map((r) => r.connPerS));
      const traced = name !== 'none' && !CONTENDERS[name].kernelOnly;
      rows.push({
        mode,
        name,
        label: CONTENDERS[name].label,
        reps: rs.length,
        connPerS: cps,
        minConnPerS: Math.min(...rs.map((r) => r.connPerS)),
        maxConnPerS: Math.max(...rs.map((r) => r.connPerS)),
        ratio: base ? cps / base : null,
        expected: median(rs.map((r) => r.expected)),
        captured: traced ? median(rs.map((r) => r.captured.transitions)) : null,
        lossPct: traced ? median(rs.map((r) => r.lossPct)) : null,
        p99Ms: CONTENDERS[name].run ? median(rs.map((r) => (r.latency ? r.latency.latencyUs.p99 / 1000 : null))) : null,
        maxLossPct: traced ? Math.max(...rs.map((r) => r.lossPct)) : null,
        ownLost: rs[0].summary ? median(rs.map((r) => r.summary?.lost ?? null)) : null,
        ownSeen: rs[0].summary ? median(rs.map((r) => r.summary?.seen ?? null)) : null,
        cpuNsPerEvent: name === 'none' ? null : median(rs.map((r) => r.cpuNsPerEvent)),
        tracerCpuPct: name === 'none' ? null : median(rs.map((r) => (100 * r.tracerCpuS) / r.churn.durationS)),
        peakRssMiB: name === 'none' ? null : Math.max(...rs.map((r) => r.peakRssKiB ?? 0)) / 1024,
        hostBusyPct: median(rs.map((r) => r.hostBusyPct)),
        run: CONTENDERS[name].run ? summarizeRun(rs) : null,
      });
    }
  }
  return rows;
}

function markdown(state) {
  const { rows, decode, profile, m, v, loadBefore, loadAfter, started, finished, command } = state;
  const L = [];
  L.push(`### Results: ${cfg.label} — ${started.slice(0, 10)}`);
  L.push('');
  if (cfg.note) L.push(`${cfg.note}`, '');
  L.push(`- **Command:** \`${command}\``);
  L.push(`- **When:** ${started} → ${finished} (UTC)`);
  L.push(`- **Machine:** Linux ${m.kernel}, ${m.nproc} CPUs (${m.cpu}), ${m.memGiB} GiB RAM${m.hz ? `, CONFIG_HZ=${m.hz}` : ''}; Node ${v.node}, ${v.bpftrace}, libbpf-tools ${v.libbpfTools}`);
  L.push(`- **Load:** before \`${loadBefore}\`; after \`${loadAfter}\``);
  L.push(
    `- **Workload:** \`bench/churn\` ${cfg.modes.join(', ')}, ${cfg.threads} threads, ${cfg.addrs} addresses × ${cfg.ports} ports per thread, ` +
      `${cfg.reps} reps × ${cfg.seconds} s${cfg.count ? ` (or ${cfg.count} connections)` : ''}${cfg.rate ? `, **paced to ${fmt(cfg.rate)} conn/s** (\`churn --rate\`)` : ', unpaced (as fast as the CPUs allow)'}${cfg.calmSeconds ? `, **each run after ${cfg.calmSeconds} s of calm at ${fmt(cfg.calmRate)} conn/s** (storm scenario: loss counts both phases, conn/s is the storm's)` : ''}, contenders interleaved round-robin (order rotated each rep); ` +
      `netns sysctls tcp_tw_reuse=${cfg.twReuse}, tcp_max_tw_buckets=${cfg.maxTw}; a fresh namespace per run`,
  );
  L.push('');
  L.push('| mode | tracer | conn/s (median) | min–max | vs no tracer | events expected | captured | lost | tracer\'s own count: seen / lost | tracer CPU per event | tracer CPU (% of a core) | peak RSS | host busy | NATS p99 latency |');
  L.push('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    L.push(
      `| ${r.mode} | ${r.label} | ${fmt(r.connPerS)} | ${fmt(r.minConnPerS)}–${fmt(r.maxConnPerS)} | ${r.ratio === null ? '—' : `**${fmt(r.ratio, 2)}×**`} | ${fmt(r.expected)} | ${fmt(r.captured)} | ${r.lossPct === null ? '—' : `${fmt(r.lossPct, 1)} %${r.maxLossPct !== r.lossPct ? ` (max ${fmt(r.maxLossPct, 1)} %)` : ''}`} | ${r.ownSeen === null ? '—' : `${fmt(r.ownSeen)} / ${fmt(r.ownLost)}`} | ${r.cpuNsPerEvent === null ? '—' : `${fmt(r.cpuNsPerEvent / 1000, 2)} µs`} | ${fmt(r.tracerCpuPct)} % | ${r.peakRssMiB === null ? '—' : `${fmt(r.peakRssMiB, 0)} MiB`} | ${fmt(r.hostBusyPct)} % | ${r.p99Ms === null ? '—' : `${fmt(r.p99Ms, 1)} ms`} |`,
    );
  }
  L.push('');
  L.push('Medians over the reps (loss: median, and the worst rep when it differs). "Events expected" = connections × ' +
    'transitions per connection (10 for client-/server-first, 6 for RST) + 2 per failed connect; "captured" = transition lines in the ' +
    "tracer's output for the bench namespace (tcpdwell) or the bench ports (the peers, which cannot filter on a namespace), the " +
    "listeners' own CLOSE→LISTEN→CLOSE left out. tcpdwell also writes timewait events (not in \"captured\"; they are in its own " +
    'count, which is what its CPU per event divides by). Tracer CPU = utime+stime of the tracer process between attach and ' +
    'drained output (/proc/PID/stat), so the kernel-side cost of the BPF programs is not in it: it shows up as the lower conn/s. ' +
    '`tcpdwell trace --port 9` runs the same kernel programs with a port filter nothing matches: all the kernel-side work is done and ' +
    'every record is dropped at emit, so its conn/s is the kernel side\'s cost alone.');
  const runRows = rows.filter((r) => r.run);
  if (runRows.length) {
    L.push('');
    L.push(
      `\`tcpdwell run\` in detail (flush interval ${cfg.flushMs ? `${cfg.flushMs} ms (\`--flush-interval\`)` : '50 ms (the default)'}; medians over reps; latency max and worst p99: over all reps). Its row above counts the agent process only; ` +
        'the nats-server (started by the harness for each run: free loopback port, JetStream file store in a temp dir) and the latency ' +
        'subscriber are separate processes on the same two cores, measured over the same window and divided by the same events ' +
        '(what the agent published: transitions + timewait events):',
    );
    L.push('');
    L.push('| mode | events/s published (subscriber: median whole second) | transitions/s | agent CPU per event | nats-server CPU per event (% of a core) | subscriber CPU per event (% of a core) | nats-server peak RSS | NATS latency p50 / p99 / max | worst p99 | in the agent (p50 / p99) | events per message | dwell records | stream size | kernel loss counters (headers) |');
    L.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|');
    for (const r of runRows) {
      const x = r.run;
      const drops = Object.entries(x.drops).filter(([, v]) => v).map(([k, v]) => `${k} ${fmt(v)}`).join(', ') || 'all 0';
      L.push(
        `| ${r.mode} | ${fmt(x.eventsPerS)} (${fmt(x.subEventsPerS)}) | ${fmt(x.transitionsPerS)} | ${r.cpuNsPerEvent === null ? '—' : `${fmt(r.cpuNsPerEvent / 1000, 2)} µs`} | ` +
          `${fmt(x.natsCpuNsPerEvent / 1000, 2)} µs (${fmt(x.natsCpuPct)} %) | ${fmt(x.subCpuNsPerEvent / 1000, 2)} µs (${fmt(x.subCpuPct)} %) | ${fmt(x.natsRssMiB)} MiB | ` +
          `${fmt(x.p50Ms, 1)} / **${fmt(x.p99Ms, 1)}** / ${fmt(x.maxMs, 0)} ms | ${fmt(x.worstP99Ms, 1)} ms | ${fmt(x.agentPartP50Ms, 1)} / ${fmt(x.agentPartP99Ms, 1)} ms | ${fmt(x.eventsPerMessage)} | ${fmt(x.dwellRecords)} | ${fmt(x.streamMiB, 1)} MiB | ${drops} |`,
      );
    }
    L.push('');
    L.push(
      'Latency = CLOCK_BOOTTIME when the subscriber (bench/nats-bench.mjs, a core NATS subscription on `tcpdwell.v1.bench.transitions`) ' +
        'received the batch − the event\'s kernel time (base_ts_ns + ts_delta_ns), for every event; "in the agent" = the batch header\'s ' +
        'sent_at_boot_ns − the event time (ring wake-up, decode, batching, flush). "Captured" in the table above = transitions in the ' +
        'JetStream stream after the run (read back with an ordered consumer, decoded with the project\'s protobuf code, listeners\' own ' +
        'events left out); the agent runs with `--netns` on the bench namespace, its own `--pin-dir` and `--spool-dir`, both removed ' +
        'after the run. Kernel loss counters: the largest value in any message header of the run (they are cumulative).',
    );
  }
  if (decode) {
    L.push('');
    L.push(`User-space microbenchmark (\`bench/decode-bench.mjs\`, \`taskset -c ${decode.cpu}\`, one core): test/fixtures/*.ring (${decode.fixtureRecords} records) replicated to ${fmt(decode.records)} records in batches of ${decode.batchRecords} (256 KiB, the wake-up size); medians of ${decode.passes} passes after a warm-up:`);
    L.push('');
    L.push('| step | events | events/s | ns per event |');
    L.push('|---|---:|---:|---:|');
    for (const r of decode.results) L.push(`| ${r.name} | ${fmt(r.events)} | ${fmt(r.eventsPerS)} | ${fmt(r.nsPerEvent)} |`);
  }
  if (state.pipeline) {
    const p = state.pipeline;
    L.push('');
    L.push(`Pipeline microbenchmark (\`bench/pipeline-bench.mjs\`, \`taskset -c ${p.cpu}\`, one core): the agent's per-event work on a recording of this run's churn (\`tcpdwell trace --format raw\`, ${fmt(p.records)} kernel records, in 256 KiB batches), medians of ${p.passes} passes after a warm-up; ns per event from the process's CPU time (wall time beside). Publishing is in the \`tcpdwell run\` rows above:`);
    L.push('');
    L.push('| step | events/s on one core | CPU ns per event | wall ns per event | |');
    L.push('|---|---:|---:|---:|---|');
    for (const r of p.results) {
      const extra = r.dwellRecords !== undefined ? `${fmt(r.dwellRecords)} dwell records` : r.bytesPerEvent !== undefined ? `${r.messages} messages, ${r.bytesPerEvent} B per event` : '';
      L.push(`| ${r.name} | ${fmt(r.eventsPerS)} | ${fmt(r.nsPerEvent)} | ${fmt(r.wallNsPerEvent)} | ${extra} |`);
    }
  }
  if (state.errors?.length) L.push('', `Not measured this time: ${state.errors.join('; ')}.`);
  if (profile) {
    L.push('');
    L.push(`CPU profile of \`${cfg.profile}\` during one ${cfg.seconds} s ${cfg.modes[0]} run (V8 profiler from attach to exit, bench/prof-hook.mjs; ${fmt(profile.busyMs)} ms busy on the JS thread; self time, top 15):`);
    L.push('');
    L.push('| function | ms | % of busy |');
    L.push('|---|---:|---:|');
    for (const t of profile.top) L.push(`| \`${t.fn}\` | ${fmt(t.ms, 1)} | ${fmt(t.pct, 1)} |`);
    if (profile.run) L.push('', `That run: ${fmt(profile.run.connPerS)} conn/s, tracer's own count ${profile.run.summary ? `${fmt(profile.run.summary.seen)} seen / ${fmt(profile.run.summary.lost)} lost` : '—'}.`);
  }
  return L.join('\n');
}

function writeBenchmarksMd(block) {
  const path = join(ROOT, 'BENCHMARKS.md');
  const begin = `<!-- bench:${cfg.label}:begin (written by bench/run-bench.mjs) -->`;
  const end = `<!-- bench:${cfg.label}:end -->`;
  let text = existsSync(path) ? readFileSync(path, 'utf8') : '# Benchmarks\n\nWritten by `make bench` (bench/run-bench.mjs).\n';
  const i = text.indexOf(begin);
  const j = text.indexOf(end);
  const full = `${begin}\n${block}\n${end}`;
  if (i >= 0 && j > i) text = text.slice(0, i) + full + text.slice(j + end.length);
  else text = `${text.trimEnd()}\n\n${full}\n`;
  writeFileSync(path, text);
  return path;
}

// ---- main ------------------------------------------------------------------------------------
async function main() {
  for (const name of cfg.contenders) if (!CONTENDERS[name]) throw new Error(`unknown contender ${name}; known: ${Object.keys(CONTENDERS).join(', ')}`);
  for (const mode of cfg.modes) if (!EVENTS_PER_CONN[mode]) throw new Error(`unknown mode ${mode}`);
  ensureTools();
  mkdirSync(OUT_DIR, { recursive: true });
  const dir = mkdtempSync(join(tmpdir(), 'tcpdwell-bench-'));
  const envShown = Object.keys(env).filter((k) => k.startsWith('BENCH_')).sort().map((k) => `${k}=${JSON.stringify(env[k]).replace(/^"(.*)"$/, '$1')}`);
  const command = [...envShown, 'make bench'].join(' ');
  const state = { m: machine(), v: versions(), loadBefore: uptimeLine(), started: new Date().toISOString(), command, errors: [] };
  log(`${command}: ${cfg.reps} reps × ${cfg.contenders.length} contenders × ${cfg.modes.length} modes × ${cfg.seconds} s; ${state.loadBefore}`);
  const results = [];
  try {
    for (let rep = 0; rep < cfg.reps; rep++) {
      for (const mode of cfg.modes) {
        // Round-robin, rotated each rep so no contender always runs first or after the same one.
        const order = cfg.contenders.map((_, i) => cfg.contenders[(i + rep) % cfg.contenders.length]);
        for (const name of order) {
          const r = await measure(name, mode, dir);
          r.rep = rep;
          results.push(r);
          // Kept as it goes, so a failure later does not lose the runs made so far.
          writeFileSync(join(OUT_DIR, `results-${cfg.label}.partial.json`), JSON.stringify({ cfg, ...state, results }, null, 1));
          log(
            `rep ${rep + 1}/${cfg.reps} ${mode} ${name}: ${fmt(r.connPerS)} conn/s` +
              (r.captured ? `, ${fmt(r.captured.transitions)}/${fmt(r.expected)} events (${fmt(r.lossPct, 1)} % lost), ${fmt(r.cpuNsPerEvent)} ns CPU/event, RSS ${fmt(r.peakRssKiB / 1024)} MiB${r.summary ? `, own: ${r.summary.seen} seen ${r.summary.lost} lost` : ''}` : '') +
              (r.latency ? `, NATS latency p50 ${fmt(r.latency.latencyUs.p50 / 1000, 1)} p99 ${fmt(r.latency.latencyUs.p99 / 1000, 1)} max ${fmt(r.latency.latencyUs.max / 1000)} ms at ${fmt(r.latency.eventsPerSecond.median)} events/s, nats-server ${fmt(r.sidecars.nats.cpuNsPerEvent)} ns/event, drops ${JSON.stringify(r.drops)}` : '') +
              `, host ${r.hostBusyPct} % busy`,
          );
        }
      }
    }
    if (cfg.profile && cfg.contenders.includes(cfg.profile)) {
      const pdir = join(dir, 'prof');
      mkdirSync(pdir);
      // A failure here (or in the microbenchmark) is reported, never a reason to lose the table.
      try {
        process.env.BENCH_PROF_OUT = join(pdir, 'trace.cpuprofile');
        // The contender's own command line, run through node with the profiler's preload.
        const c = CONTENDERS[cfg.profile];
        const argv = (ctx) => ['node', '--import', join(ROOT, 'bench/prof-hook.mjs'), join(ROOT, 'dist/main.js'), ...c.argv(ctx).slice(1)];
        const r = await measure(cfg.profile, cfg.modes[0], dir, { argv });
        state.profile = { ...summarizeCpuProfile(pdir), run: r };
        log(`profile: ${JSON.stringify(state.profile.top?.slice(0, 5))}`);
      } catch (err) {
        log(`profile failed: ${err.message}`);
        state.errors.push(`profile: ${err.message.split('\n')[0]}`);
      }
    }
    if (cfg.decode) {
      const cpu = cpus().length - 1;
      log(`decode microbenchmark on CPU ${cpu}`);
      try {
        const out = sh('taskset', ['-c', String(cpu), 'node', join(ROOT, 'bench/decode-bench.mjs')], { env: { ...env }, maxBuffer: 1 << 20 });
        state.decode = { ...JSON.parse(out.trim().split('\n').pop()), cpu };
      } catch (err) {
        log(`decode microbenchmark failed: ${err.message}`);
        state.errors.push(`decode microbenchmark: ${err.message.split('\n')[0]}`);
      }
    }
    if (cfg.pipeline) {
      const cpu = cpus().length - 1;
      try {
        const recording = join(dir, 'recording.ring');
        if (!existsSync(recording)) {
          log('recording a churn for the pipeline microbenchmark (tcpdwell trace --format raw, 3 s)');
          const seconds = cfg.seconds;
          cfg.seconds = 3;
          try {
            await measure('tcpdwell-raw', cfg.modes[0], dir);
          } finally {
            cfg.seconds = seconds;
          }
        }
        if (env.BENCH_KEEP_RECORDING) copyFileSync(recording, env.BENCH_KEEP_RECORDING);
        log(`pipeline microbenchmark on CPU ${cpu} (${(statSync(recording).size / 2 ** 20).toFixed(0)} MiB recording)`);
        const out = sh('taskset', ['-c', String(cpu), 'node', join(ROOT, 'bench/pipeline-bench.mjs')], { env: { ...env, BENCH_RECORDING: recording }, maxBuffer: 1 << 20 });
        state.pipeline = { ...JSON.parse(out.trim().split('\n').pop()), cpu };
      } catch (err) {
        log(`pipeline microbenchmark failed: ${err.message}`);
        state.errors.push(`pipeline microbenchmark: ${err.message.split('\n')[0]}`);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  state.finished = new Date().toISOString();
  state.loadAfter = uptimeLine();
  state.rows = summarize(results);
  const block = markdown(state);
  writeFileSync(join(OUT_DIR, `results-${cfg.label}.json`), JSON.stringify({ cfg, ...state, results }, null, 1));
  const path = writeBenchmarksMd(block);
  rmSync(join(OUT_DIR, `results-${cfg.label}.partial.json`), { force: true });
  console.log(block);
  log(`wrote ${path} (block "${cfg.label}") and bench/.output/results-${cfg.label}.json; ${state.loadAfter}`);
}

main().catch((err) => {
  log(`failed: ${err.stack || err}`);
  cleanup();
  process.exit(1);
});
