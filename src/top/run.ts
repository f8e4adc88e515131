/**
 * `tcpdwell top`: wires a source (this host's kernel, or the fleet on NATS) to the terminal.
 * On a terminal: full screen, keys, redrawn every interval. Otherwise: the same frame as plain
 * text every interval (for logs, `watch`, or a pipe).
 */
import type { Writable } from 'node:stream';
import { resolveNetns, type Netns } from '../netns.js';
import type { StateName } from '../explain.js';
import type { ConnectionSettings } from '../publish/nats-options.js';
import type { DetectorThresholds } from '../track/index.js';
import { LocalSource } from './local.js';
import { FleetSource } from './fleet.js';
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
  ports: number[];
  family: 'inet' | 'inet6' | null;
  ringBytes?: number;
  thresholds?: Partial<DetectorThresholds>;
  intervalS: number;
  durationS: number | null;
  out: Writable & Partial<Pick<NodeJS.WriteStream, 'isTTY' | 'columns' | 'rows'>>;
  input: NodeJS.ReadStream;
  err: Writable;
  objectPath?: string;
}

interface Source {
  tick(nowMs: number, view: ViewState): TopData;
  close(): void | Promise<void>;
}

const unicodeLocale = () => /utf-?8/i.test(process.env.LC_ALL || process.env.LC_CTYPE || process.env.LANG || '');

export async function runTop(opts: TopOptions): Promise<void> {
  let source: Source;
  if (opts.connection) {
    const fleet = await FleetSource.connect(opts.connection, opts.host);
    source = { tick: (now) => fleet.tick(now), close: () => fleet.close() };
  } else {
    const local = LocalSource.open({ netns: opts.netns, ports: opts.ports, family: opts.family, ringBytes: opts.ringBytes, thresholds: opts.thresholds, objectPath: opts.objectPath });
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
    else opts.out.write(`${frame(lines, false).replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '')}\n\n`);
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

  const onSignal = () => stopNow();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  process.once('SIGHUP', onSignal);
  opts.out.on('error', onSignal); // a closed pipe ends it like a signal
  const timer = setInterval(tick, opts.intervalS * 1000);
  const end = opts.durationS !== null ? setTimeout(onSignal, opts.durationS * 1000) : undefined;
  try {
    screen?.enter(onKey, draw);
    tick();
    await stopped;
  } finally {
    clearInterval(timer);
    clearTimeout(end);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('SIGHUP', onSignal);
    screen?.restore();
    await source.close();
  }
}
