/**
 * `tcpdwell top`: wires a source (this host's kernel, or the fleet on NATS) to the terminal.
 * On a terminal: full screen, keys, redrawn every interval. Otherwise: the same frame as plain
 * text every interval (for logs, `watch`, or a pipe). The source is loaded when it is chosen:
 * `top --nats` never loads the kernel side (or its native addon).
 */
import type { Writable } from 'node:stream';
import type { KernelFilters } from '../kernel/filters.js';
import { resolveNetns, type Netns } from '../kernel/namespaces.js';
import type { ConnectionSettings } from '../publish/connection.js';
import type { DetectorThresholds, StateName } from '../track/index.js';
import { untilStopped } from '../common/lifecycle.js';
import { logger } from '../common/log.js';
import type { TopData } from './model.js';
import { render, visibleCounts, type RenderOptions } from './render.js';
import { Screen, frame } from './terminal.js';
import { handleKey, initialView, type Key, type ViewState } from './view.js';

export interface TopOptions {
  /** null: this host (loads the kernel program); otherwise the fleet through NATS */
  connection: ConnectionSettings | null;
  /** fleet: only this host */
  host?: string;
  netns: Netns[];
  ports: KernelFilters['ports'];
  family: KernelFilters['family'];
  ringBytes?: number;
  thresholds?: Partial<DetectorThresholds>;
  intervalS: number;
  durationS: number | null;
  out: Writable & Partial<Pick<NodeJS.WriteStream, 'isTTY' | 'columns' | 'rows'>>;
  input: NodeJS.ReadStream;
  err: Writable;
  objectPath?: string;
  /** the running agent's pin directory, read for the ages and owners of sockets older than top */
  agentPinDir?: string;
}

interface Source {
  tick(nowMs: number, view: ViewState): TopData;
  close(): void | Promise<void>;
}

const unicodeLocale = () => /utf-?8/i.test(process.env.LC_ALL || process.env.LC_CTYPE || process.env.LANG || '');

export async function runTop(opts: TopOptions): Promise<void> {
  let source: Source;
  if (opts.connection) {
    const { FleetSource } = await import('./fleet.js');
    const fleet = await FleetSource.connect(opts.connection, opts.host);
    source = { tick: (now) => fleet.tick(now), close: () => fleet.close() };
  } else {
    const { LocalSource } = await import('./local.js');
    const local = LocalSource.open({ netns: opts.netns, ports: opts.ports, family: opts.family, ringBytes: opts.ringBytes, thresholds: opts.thresholds, objectPath: opts.objectPath, peerPinDir: opts.agentPinDir, log: (l) => logger('top', opts.err).warn(l) });
    source = { tick: (now, view) => local.tick(now, view), close: () => local.close() };
  }

  const tty = opts.out.isTTY === true;
  const screen = tty ? new Screen(opts.out as NodeJS.WriteStream, opts.input) : null;
  let view = initialView({ host: opts.host ?? null });
  let data: TopData | null = null;
  let stopNow: (err?: unknown) => void = () => {};
  const stopped = new Promise<void>((resolve, reject) => (stopNow = (err) => (err ? reject(err) : resolve())));
  const renderOpts = (): RenderOptions => ({
    cols: screen ? screen.cols : Number(process.env.COLUMNS) || 160,
    rows: screen ? screen.rows : Infinity,
    nowMs: Date.now(),
    intervalS: opts.intervalS,
    unicode: unicodeLocale(),
    interactive: screen !== null && opts.input.isTTY === true,
  });

  const draw = () => {
    if (!data) return;
    const lines = render(data, view, renderOpts());
    if (screen) screen.draw(lines);
    else opts.out.write(`${frame(lines, 'plain').replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '')}\n\n`);
  };
  const tick = () => {
    try {
      const next = source.tick(Date.now(), view);
      if (!view.paused || !data) data = next;
      draw();
    } catch (err) {
      stopNow(err);
    }
  };
  const explainTarget = (): StateName | null => {
    if (!data) return null;
    const alert = data.alerts.find((a) => a.firing && a.state) ?? data.alerts.find((a) => a.state);
    if (alert?.state) return alert.state;
    const { counts } = visibleCounts(data, view);
    const top = Object.entries(counts ?? {}).sort((a, b) => b[1] - a[1])[0]?.[0];
    return (top as StateName | undefined) ?? null;
  };
  const onKey = (key: Key) => {
    const before = view;
    const r = handleKey(view, key, {
      hosts: data?.hosts.map((h) => h.host) ?? [],
      resolveNetns: (spec) => resolveNetns(spec).inode,
      explainTarget,
    });
    if (r.quit) return stopNow();
    view = r.view;
    // A new port/process filter needs the socket list: take it now rather than at the next tick.
    if ((view.port !== before.port || view.process !== before.process) && !view.paused) tick();
    else draw();
  };

  opts.out.on('error', () => stopNow()); // a closed pipe ends it like a signal
  const timer = setInterval(tick, opts.intervalS * 1000);
  try {
    screen?.enter(onKey, draw);
    tick();
    await untilStopped({ durationS: opts.durationS, signals: ['SIGINT', 'SIGTERM', 'SIGHUP'], also: stopped });
  } finally {
    clearInterval(timer);
    screen?.restore();
    await source.close();
  }
}
