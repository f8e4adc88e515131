#!/usr/bin/env node
// `make soak` (issue 7; not part of make test or CI): the agent (`tcpdwell run`) publishing to a
// local nats-server under steady loopback churn in a network namespace of its own, for
// SOAK_SECONDS. Every SOAK_INTERVAL seconds it samples the agent's RSS and open fds, and compares
// the agent's live table (control service `tcpdwell.control.<host>.states`) with `ss -tan` in the
// namespace. Writes a results block into BENCHMARKS.md (replacing the block with the same label)
// and the raw samples to bench/.output/soak-<label>.json.
//
// A comparison needs a quiet moment: the churn process is stopped (SIGSTOP) for the sample and
// continued after. TIME_WAIT sockets keep expiring meanwhile, so `ss` runs before and after the
// table is read, and the table must lie between the two counts, state by state; "drift" is how
// far it lies outside (0 = the table is exact).
//
// Verdict: RSS flat (median of the last third of samples within SOAK_RSS_TOLERANCE_PCT of the
// first third's), fds constant (every sample the same count), drift 0 in every sample, and
// nothing lost (kernel ring, spool).
//
// Needs root. Configuration (environment):
//   SOAK_SECONDS=600 (measured period; the 10-minute run is the target)  SOAK_WARMUP=60 (churn
//   before the first sample: TIME_WAIT lasts 60 s, so the table reaches its steady size)
//   SOAK_INTERVAL=30  SOAK_RATE=1000 (connections/s)  SOAK_THREADS=1  SOAK_MODE=client-first
//   SOAK_RSS_TOLERANCE_PCT=10  SOAK_LABEL=latest
//   SOAK_TRACE=1 (the default; 0 = off): also record `tcpdwell trace --format raw` of the namespace
//   for the whole run, to bench/.output/soak-<label>.ring (about 100 MB a minute at 1000 conn/s).
//   The kernel now and then delivers some events to no program at all (BENCHMARKS.md, Soak): the
//   recording, replayed, tells the agent's drift from the kernel's. Look a socket up with
//   bench/soak-replay.mjs.
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { CHURN, cleanupOnExit, OUT_DIR, ROOT, TCPDWELL } from './common.mjs';
import { setTimeout as sleep } from 'node:timers/promises';

const env = process.env;
const num = (name, dflt) => {
  const v = env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) fail(`${name}=${v}: give a number >= 0`);
  return n;
};
function fail(msg) {
  console.error(`soak: ${msg}`);
  process.exit(1);
}

const cfg = {
  seconds: num('SOAK_SECONDS', 600),
  warmup: num('SOAK_WARMUP', 60),
  interval: num('SOAK_INTERVAL', 30),
  rate: num('SOAK_RATE', 1000),
  threads: num('SOAK_THREADS', 1),
  mode: env.SOAK_MODE || 'client-first',
  rssTolerancePct: num('SOAK_RSS_TOLERANCE_PCT', 10),
  label: env.SOAK_LABEL || 'latest',
  trace: env.SOAK_TRACE !== '0',
};
if (cfg.interval <= 0 || cfg.seconds < cfg.interval * 2) fail(`SOAK_SECONDS (${cfg.seconds}) must be at least two SOAK_INTERVALs (${cfg.interval})`);
const NETNS = `tcpdwell-soak-${process.pid}`;
const HOST = 'soak';
const log = (...a) => console.error('soak:', ...a);

// Imported after the checks so that a missing build is one clear line.
if (!existsSync(join(ROOT, 'dist/main.js'))) fail('not built: run make (or make soak)');
if (!existsSync(CHURN)) fail(`${CHURN} is missing: run make soak (it builds bench/churn.c)`);
if (process.getuid() !== 0) fail('make soak needs root (BPF, network namespaces)');
const { startLocalNats } = await import(join(ROOT, 'dist/publish/nats-server.js'));
const { toSsCounts, ssStateName } = await import(join(ROOT, 'dist/track/index.js'));
const { connect } = await import('@nats-io/transport-node');

// ---- set-up and clean-up -------------------------------------------------------------------
const dir = mkdtempSync(join(tmpdir(), 'tcpdwell-soak-'));
const live = new Set();
let netnsUp = false;
let nats = null;
function cleanup() {
  for (const p of live) {
    try {
      process.kill(p.pid, 'SIGCONT');
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // exited meanwhile
    }
  }
  live.clear();
  if (netnsUp) {
    netnsUp = false;
    try {
      execFileSync('ip', ['netns', 'del', NETNS], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  }
  nats?.process.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
}
cleanupOnExit(cleanup, log, NETNS);

const sh = (cmd, args) => execFileSync(cmd, args, { encoding: 'utf8' });
sh('ip', ['netns', 'add', NETNS]);
netnsUp = true;
sh('ip', ['-n', NETNS, 'link', 'set', 'lo', 'up']);
// As make bench: TIME_WAIT 4-tuples reusable after 1 s, and room for every TIME_WAIT.
for (const s of ['net.ipv4.tcp_tw_reuse=1', 'net.ipv4.tcp_max_tw_buckets=1048576']) sh('ip', ['netns', 'exec', NETNS, 'sysctl', '-qw', s]);
const inode = statSync(`/run/netns/${NETNS}`).ino;

nats = await startLocalNats({ storeDir: join(dir, 'nats') });
log(`nats-server at ${nats.url} (store ${nats.storeDir})`);

// ---- the agent ---------------------------------------------------------------------------------
const agentArgs = ['run', '--nats', nats.url, '--host', HOST, '--spool-dir', join(dir, 'spool'), '--no-pin', '--netns', NETNS,
  '--status-interval', String(cfg.interval), '--stream-max-bytes', '256MiB', '--create-stream'];
const agent = spawn(TCPDWELL, agentArgs, { stdio: ['ignore', 'ignore', 'pipe'] });
live.add(agent);
let agentLog = '';
agent.stderr.on('data', (d) => (agentLog += d));
const agentExit = new Promise((resolve) => agent.on('close', (code, signal) => resolve({ code, signal })));
for (const deadline = Date.now() + 30_000; !agentLog.includes('publishing to'); await sleep(100)) {
  if (agent.exitCode !== null || Date.now() > deadline) fail(`the agent did not start:\n${agentLog}`);
}
log(`agent pid ${agent.pid} publishing`);

// ---- the optional kernel record ----------------------------------------------------------------
let tracer = null;
const tracePath = join(OUT_DIR, `soak-${cfg.label}.ring`);
if (cfg.trace) {
  mkdirSync(OUT_DIR, { recursive: true });
  const fd = openSync(tracePath, 'w');
  tracer = spawn(TCPDWELL, ['trace', '--format', 'raw', '--no-snapshot', '--netns', NETNS, '--ring-bytes', String(64 << 20)], { stdio: ['ignore', fd, 'pipe'] });
  live.add(tracer);
  let traceLog = '';
  tracer.stderr.on('data', (d) => (traceLog += d));
  for (const deadline = Date.now() + 30_000; !traceLog.includes('tracing'); await sleep(100)) {
    if (tracer.exitCode !== null || Date.now() > deadline) fail(`the trace did not start:\n${traceLog}`);
  }
  log(`recording the namespace's kernel events to ${tracePath}`);
}

// ---- the churn ---------------------------------------------------------------------------------
const churnArgs = ['--mode', cfg.mode, '--threads', String(cfg.threads), '--rate', String(cfg.rate), '--addrs', '8', '--ports', '8',
  '--duration', String(cfg.warmup + cfg.seconds + 3600)];
const churn = spawn('ip', ['netns', 'exec', NETNS, CHURN, ...churnArgs], { stdio: ['ignore', 'pipe', 'pipe'] });
live.add(churn);
let churnOut = '';
churn.stdout.on('data', (d) => (churnOut += d));
churn.stderr.on('data', (d) => (churnOut += d));
const churnExit = new Promise((resolve) => churn.on('close', (code, signal) => resolve({ code, signal })));

const nc = await connect({ servers: nats.url });
// The agent's latest summary names the oldest sockets per state: when the table drifts, the
// sockets it holds wrongly are among them (they sit there until their timewait ends).
let stuck = [];
const { pb } = await import(join(ROOT, 'dist/publish/wire.js'));
const { stateName } = await import(join(ROOT, 'dist/decode/index.js'));
void (async () => {
  for await (const m of nc.subscribe(`tcpdwell.v1.${HOST}.summary`)) stuck = pb.Summary.decode(m.data).stuck;
})();
const request = async (what) => JSON.parse((await nc.request(`tcpdwell.control.${HOST}.${what}`, '', { timeout: 10_000 })).string());

function ssCounts() {
  const out = {};
  const text = execFileSync('ip', ['netns', 'exec', NETNS, 'ss', '-Htan'], { encoding: 'utf8', maxBuffer: 1 << 30 });
  for (const line of text.split('\n')) {
    if (!line) continue;
    const state = line.slice(0, line.indexOf(' '));
    out[state] = (out[state] ?? 0) + 1;
  }
  return out;
}
const ssNameOf = (x) => ssStateName(stateName(x.state));
/** Per state, how far counts lie outside the two ss counts (signed; states within them left out). */
function outside(counts, before, after) {
  const out = [];
  for (const k of new Set([...Object.keys(before), ...Object.keys(after), ...Object.keys(counts)])) {
    const lo = Math.min(before[k] ?? 0, after[k] ?? 0);
    const hi = Math.max(before[k] ?? 0, after[k] ?? 0);
    const v = counts[k] ?? 0;
    const d = v < lo ? v - lo : v > hi ? v - hi : 0;
    if (d) out.push([k, d]);
  }
  return out;
}
const total = (offsets) => offsets.reduce((n, [, d]) => n + Math.abs(d), 0);
const procStatus = (pid) => readFileSync(`/proc/${pid}/status`, 'utf8');
const kib = (text, field) => Number(new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(text)?.[1] ?? NaN);

/** One sample, with the churn stopped: the agent's RSS and fds, and its table between two ss counts. */
async function sample(t) {
  process.kill(churn.pid, 'SIGSTOP');
  try {
    await sleep(1000); // the last events through the ring (10 ms polls) and into the table
    const status = procStatus(agent.pid);
    const fds = readdirSync(`/proc/${agent.pid}/fd`).length;
    const before = ssCounts();
    const states = await request('states');
    const after = ssCounts();
    const agentStatus = await request('status');
    const mine = states?.byNetns?.find((n) => n.netns === inode);
    const table = mine ? toSsCounts(mine.counts) : {};
    const offsets = outside(table, before, after);
    const drift = total(offsets);
    const off = offsets.map(([s, d]) => `${s} ${d > 0 ? '+' : '−'}${Math.abs(d)}`); // "FIN-WAIT-2 +6"
    const sum = (o) => Object.values(o).reduce((a, b) => a + b, 0);
    const d = agentStatus.drops;
    return {
      t,
      atNs: states?.atNs ?? null, // the agent's clock when it read its table: the replay below reads the recording's up to it
      rssKiB: kib(status, 'VmRSS'),
      hwmKiB: kib(status, 'VmHWM'),
      fds,
      threads: Number(/^Threads:\s+(\d+)$/m.exec(status)?.[1]),
      tableSockets: sum(table),
      ssBefore: sum(before),
      ssAfter: sum(after),
      drift,
      off: off.join(', '),
      table,
      ss: before,
      ssAfterCounts: after,
      events: agentStatus.events,
      published: agentStatus.nats.published,
      spoolMessages: agentStatus.spool.messages,
      // what the tracker corrected or dropped: the first thing to read when the table drifts
      tracker: Object.fromEntries(['late', 'duplicates', 'corrections', 'unknownSockets', 'timewaitFlips', 'timewaitsOverdue', 'healedAdded', 'healedRemoved', 'healedCorrected'].map((k) => [k, agentStatus.tracker?.[k]])),
      lost: d.lost_ring_full + d.lost_no_storage + d.malformed + d.spoolDropped + d.skipped_transitions + d.skipped_timer,
      lostBy: Object.entries(d)
        .filter(([k, v]) => v > 0 && ['lost_ring_full', 'lost_no_storage', 'malformed', 'spoolDropped', 'skipped_transitions', 'skipped_timer'].includes(k))
        .map(([k, v]) => `${k} ${v}`)
        .join(', '),
      stateGaps: d.state_gaps,
      // the oldest sockets the table holds in a state it has too many of (cookie, age)
      suspects: stuck
        .filter((x) => off.some((o) => o.startsWith(ssNameOf(x)) && o.includes('+')))
        .map((x) => ({ cookie: BigInt(x.cookie.toString()).toString(), state: stateName(x.state), timewait: x.timewait, ageS: Number(x.ageNs) / 1e9 })),
    };
  } finally {
    process.kill(churn.pid, 'SIGCONT');
  }
}

// ---- the run ---------------------------------------------------------------------------------
const started = new Date();
log(`churn ${cfg.rate} conn/s (${cfg.mode}, ${cfg.threads} thread(s)); warm-up ${cfg.warmup} s, then ${cfg.seconds} s sampled every ${cfg.interval} s`);
await sleep(cfg.warmup * 1000);
const samples = [];
const t0 = Date.now();
for (let i = 0; ; i++) {
  const due = t0 + i * cfg.interval * 1000;
  await sleep(Math.max(0, due - Date.now()));
  if (agent.exitCode !== null) fail(`the agent exited mid-run:\n${agentLog.slice(-2000)}`);
  if (churn.exitCode !== null) fail(`the churn exited mid-run: ${churnOut}`);
  const s = await sample(Math.round((Date.now() - t0) / 1000));
  samples.push(s);
  log(
    `t=${s.t}s rss ${(s.rssKiB / 1024).toFixed(1)} MiB, ${s.fds} fds, table ${s.tableSockets} sockets vs ss ${s.ssBefore}..${s.ssAfter}, drift ${s.drift}${s.off ? ` (${s.off})` : ''}, ` +
      `${s.events} events, lost ${s.lost}${s.lostBy ? ` (${s.lostBy})` : ''}, spool ${s.spoolMessages}`,
  );
  if (s.suspects.length) log(`  oldest in the drifted states: ${s.suspects.map((x) => `${x.state} cookie ${x.cookie} ${x.ageS.toFixed(1)} s`).join('; ')}`);
  if (i * cfg.interval >= cfg.seconds) break;
}
churn.kill('SIGTERM');
const churnEnd = await churnExit;
let churnResult = null;
try {
  churnResult = JSON.parse(churnOut.trim().split('\n').pop());
} catch {
  // killed before it printed; the rate is then from the agent's event count
}
agent.kill('SIGTERM');
const agentEnd = await agentExit;
if (tracer) {
  tracer.kill('SIGINT');
  await new Promise((resolve) => (tracer.exitCode !== null ? resolve() : tracer.on('close', resolve)));
  log(`kernel record: ${tracePath} (${(statSync(tracePath).size / 2 ** 20).toFixed(0)} MiB)`);
}
await nc.close();
live.clear();
await nats.stop(); // its pipes would keep this process alive
nats = null;
const finalLine = /stopped: (.*)/.exec(agentLog)?.[1] ?? '(no final line)';

// ---- what the kernel said (SOAK_TRACE=1) --------------------------------------------------------
// The recording is a second, independent consumer of the same kernel events. Replaying it through a
// fresh Tracker up to each sample's moment gives the table the events alone imply: the agent's table
// must equal it (else the agent lost or mishandled something), and where it differs from ss, the
// kernel did not deliver events to either consumer.
let kernel = null;
if (tracer) {
  const { auditRecording, eachEvent } = await import(join(ROOT, 'bench/kernel-record.mjs'));
  const { Tracker } = await import(join(ROOT, 'dist/track/index.js'));
  kernel = auditRecording(tracePath);
  let now = 0n;
  const replay = new Tracker({ clock: () => now });
  const due = samples.filter((x) => x.atNs !== null).map((x) => ({ x, at: BigInt(x.atNs) }));
  const take = (x, at) => {
    now = at;
    const mine = replay.table().byNetns.find((n) => n.netns === inode);
    x.replay = mine ? toSsCounts(mine.counts) : {};
  };
  let i = 0;
  eachEvent(tracePath, (e) => {
    while (i < due.length && e.tsNs > due[i].at) take(due[i].x, due[i++].at);
    now = e.tsNs;
    replay.ingest([e]);
  });
  while (i < due.length) take(due[i].x, due[i++].at);
  const diff = (a, b) => [...new Set([...Object.keys(a), ...Object.keys(b)])].reduce((n, k) => n + Math.abs((a[k] ?? 0) - (b[k] ?? 0)), 0);
  for (const x of samples) {
    x.tableVsReplay = x.replay ? diff(x.table, x.replay) : null;
    x.replayVsSs = x.replay ? total(outside(x.replay, x.ss, x.ssAfterCounts)) : null;
  }
  log(`kernel record: ${kernel.events} events, ${kernel.sockets} sockets, ${kernel.brokenChains} with transitions that never came, ${kernel.missingEnds} timewaits whose end never came`);
}

// ---- verdict ---------------------------------------------------------------------------------
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const third = Math.max(1, Math.floor(samples.length / 3));
const rssFirst = median(samples.slice(0, third).map((s) => s.rssKiB));
const rssLast = median(samples.slice(-third).map((s) => s.rssKiB));
const rssChangePct = (100 * (rssLast - rssFirst)) / rssFirst;
const fdSet = [...new Set(samples.map((s) => s.fds))];
const maxDrift = Math.max(...samples.map((s) => s.drift));
const lost = samples.at(-1).lost;
// With a recording, drift is the agent's only where its table differs from the recording's replay.
const trackerExact = kernel ? samples.every((x) => x.tableVsReplay === 0) : null;
const verdict = {
  rssFlat: Math.abs(rssChangePct) <= cfg.rssTolerancePct,
  fdsConstant: fdSet.length === 1,
  driftZero: maxDrift === 0 || trackerExact === true,
  nothingLost: lost === 0,
  agentExitedCleanly: agentEnd.code === 0,
};
const pass = Object.values(verdict).every(Boolean);

// ---- report ----------------------------------------------------------------------------------
const mib = (k) => (k / 1024).toFixed(1);
const uname = sh('uname', ['-srm']).trim();
const command = `make soak SOAK_SECONDS=${cfg.seconds}` + (cfg.label !== 'latest' ? ` SOAK_LABEL=${cfg.label}` : '');
const eventsPerS = samples.length > 1 ? (samples.at(-1).events - samples[0].events) / Math.max(1, samples.at(-1).t - samples[0].t) : 0;
const lines = [
  `### Soak: ${cfg.label} — ${started.toISOString().slice(0, 10)}`,
  '',
  `- **Machine:** ${uname}, ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, Node ${process.version}` +
    (cfg.seconds < 600 ? `. **Short run (${cfg.seconds} s): the 10-minute run (\`make soak\`, SOAK_SECONDS=600) is the target.**` : ''),
  `- **Command:** \`${command}\` — \`tcpdwell ${agentArgs.join(' ').replace(dir, '$TMP').replace(dir, '$TMP')}\` against a local nats-server; ` +
    `\`bench/churn ${churnArgs.slice(0, -2).join(' ')}\` in \`${NETNS.replace(/\d+$/, '<pid>')}\` (tcp_tw_reuse=1); ${cfg.warmup} s warm-up, ` +
    `then a sample every ${cfg.interval} s with the churn stopped (SIGSTOP) for about 1.5 s`,
  `- **Churn:** ${churnResult ? `${churnResult.connections} connections at ${churnResult.connPerS} conn/s over the whole run` : `${cfg.rate} conn/s asked`}; ` +
    `the agent handled ${eventsPerS.toFixed(0)} events/s between the first and last sample`,
  `- **Agent at the end:** ${finalLine}`,
  ...(kernel
    ? [
        `- **Kernel record** (\`tcpdwell trace --format raw\` beside the agent, SOAK_TRACE=1): ${kernel.events} events, ${kernel.sockets} sockets; ` +
          `${kernel.brokenChains} sockets with transitions that never came, ${kernel.missingEnds} timewaits whose end never came (due more than 8 s before the record ends)` +
          (kernel.broken.length ? `; e.g. ${kernel.broken.map((b) => `${b.cookie} at ${b.atS.toFixed(1)} s (${b.why})`).join('; ')}` : ''),
      ]
    : []),
  '',
  `| t (s) | RSS MiB | peak MiB | fds | threads | table sockets | ss -tan before..after | drift (table − ss) |${kernel ? ' table − replay | replay − ss |' : ''} timewaits overdue | events | published | spool | lost (counted) |`,
  `|---|---|---|---|---|---|---|---|${kernel ? '---|---|' : ''}---|---|---|---|---|`,
  ...samples.map(
    (s) =>
      `| ${s.t} | ${mib(s.rssKiB)} | ${mib(s.hwmKiB)} | ${s.fds} | ${s.threads} | ${s.tableSockets} | ${s.ssBefore}..${s.ssAfter} | ${s.drift}${s.off ? ` (${s.off})` : ''} | ` +
      (kernel ? `${s.tableVsReplay ?? '–'} | ${s.replayVsSs ?? '–'} | ` : '') +
      `${s.tracker.timewaitsOverdue ?? '–'} | ${s.events} | ${s.published} | ${s.spoolMessages} | ${s.lost}${s.lostBy ? ` (${s.lostBy})` : ''} |`,
  ),
  '',
  `**Verdict: ${pass ? 'PASS' : 'FAIL'}** — ` +
    [
      `RSS ${verdict.rssFlat ? 'flat' : 'NOT flat'} (median of the last third ${mib(rssLast)} MiB vs the first third's ${mib(rssFirst)} MiB: ${rssChangePct >= 0 ? '+' : ''}${rssChangePct.toFixed(1)} %, tolerance ±${cfg.rssTolerancePct} %)`,
      `fds ${verdict.fdsConstant ? `constant (${fdSet[0]})` : `NOT constant (${fdSet.join(', ')})`}`,
      `table drift ${maxDrift === 0 ? '0 in every sample' : `up to ${maxDrift}`}` +
        (kernel
          ? trackerExact
            ? maxDrift === 0
              ? ''
              : ', all of it sockets whose events the kernel delivered to neither consumer (the table equals the replay of the independent recording in every sample)'
            : `; the table differs from the replay of the independent recording (up to ${Math.max(...samples.map((x) => x.tableVsReplay ?? 0))}): the agent's own drift`
          : ''),
      `${lost} events lost`,
      `agent exit ${agentEnd.code ?? agentEnd.signal}`,
    ].join('; ') +
    '.',
];
const block = lines.join('\n');
mkdirSync(OUT_DIR, { recursive: true });
writeFileSync(join(OUT_DIR, `soak-${cfg.label}.json`), JSON.stringify({ cfg, started, churn: churnResult, churnExit: churnEnd, samples, verdict }, null, 2));
const path = join(ROOT, 'BENCHMARKS.md');
const begin = `<!-- soak:${cfg.label}:begin (written by bench/soak.mjs) -->`;
const end = `<!-- soak:${cfg.label}:end -->`;
let md = readFileSync(path, 'utf8');
const wrapped = `${begin}\n${block}\n${end}`;
const i = md.indexOf(begin);
const j = md.indexOf(end);
md = i >= 0 && j > i ? md.slice(0, i) + wrapped + md.slice(j + end.length) : `${md.trimEnd()}\n\n${wrapped}\n`;
writeFileSync(path, md);
console.log(block);
log(`results in ${path} and ${join(OUT_DIR, `soak-${cfg.label}.json`)}`);
process.exit(pass ? 0 : 1); // the 'exit' handler deletes the namespace and the temp dir
