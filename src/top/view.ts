/**
 * What the operator chose to see (sort, filters, pause, panels) and how keys change it. Pure:
 * `handleKey` takes the view and one key and returns the next view; the terminal layer
 * (terminal.ts) only turns bytes into keys.
 */
import type { StateName } from '../track/explain.js';
import type { SocketRow } from './model.js';

export const SORT_KEYS = ['count', 'state', 'p99', 'trend'] as const;
export type SortKey = (typeof SORT_KEYS)[number];
export type FilterField = 'netns' | 'port' | 'process';

export interface ViewState {
  sort: SortKey;
  netns: number | null;
  port: number | null;
  /** an owner's command name (substring, any case) or pid */
  process: string | null;
  /** fleet: one host, or null for all */
  host: string | null;
  paused: boolean;
  help: boolean;
  /** the state whose explanation is shown, if any */
  explain: StateName | null;
  /** a filter being typed */
  prompt: { field: FilterField; text: string } | null;
  /** one line of feedback (a bad filter value) */
  message: string | null;
}

export const initialView = (over: Partial<ViewState> = {}): ViewState => ({
  sort: 'count',
  netns: null,
  port: null,
  process: null,
  host: null,
  paused: false,
  help: false,
  explain: null,
  prompt: null,
  message: null,
  ...over,
});

/** Keys as terminal.ts names them: one character, or 'enter', 'escape', 'backspace', 'tab', 'ctrl-c', 'up', 'down', ... */
export type Key = string;

export interface KeyContext {
  /** hosts known (fleet), in display order */
  hosts: readonly string[];
  /** a namespace name or path to its inode; throws with a message for the user */
  resolveNetns: (spec: string) => number;
  /** the state `e` explains: that of the newest firing alert, else of the first row */
  explainTarget: () => StateName | null;
}

const FIELD_KEY: Record<string, FilterField> = { n: 'netns', p: 'port', c: 'process' };

/** The next view after one key, and whether to quit. */
export function handleKey(view: ViewState, key: Key, ctx: KeyContext): { view: ViewState; quit: boolean } {
  if (key === 'ctrl-c') return { view, quit: true };
  if (view.prompt) return { view: promptKey(view, view.prompt, key, ctx), quit: false };
  const v: ViewState = { ...view, message: null };
  switch (key) {
    case 'q':
      return { view, quit: true };
    case 's':
      return { view: { ...v, sort: SORT_KEYS[(SORT_KEYS.indexOf(v.sort) + 1) % SORT_KEYS.length]! }, quit: false };
    case ' ':
      return { view: { ...v, paused: !v.paused }, quit: false };
    case 'n':
    case 'p':
    case 'c':
      return { view: { ...v, prompt: { field: FIELD_KEY[key]!, text: '' } }, quit: false };
    case 'x':
      return { view: { ...v, netns: null, port: null, process: null, host: null }, quit: false };
    case 'tab': {
      if (ctx.hosts.length === 0) return { view: v, quit: false };
      const i = v.host === null ? -1 : ctx.hosts.indexOf(v.host);
      return { view: { ...v, host: i + 1 < ctx.hosts.length ? ctx.hosts[i + 1]! : null }, quit: false };
    }
    case 'e': {
      const target = v.explain ? null : ctx.explainTarget();
      return { view: { ...v, explain: target, help: false, message: v.explain || target ? null : 'nothing to explain yet' }, quit: false };
    }
    case '?':
    case 'h':
      return { view: { ...v, help: !v.help, explain: null }, quit: false };
    case 'escape':
      return { view: { ...v, help: false, explain: null }, quit: false };
    default:
      return { view: v, quit: false };
  }
}

function promptKey(view: ViewState, prompt: NonNullable<ViewState['prompt']>, key: Key, ctx: KeyContext): ViewState {
  if (key === 'escape') return { ...view, prompt: null };
  if (key === 'backspace') return { ...view, prompt: { ...prompt, text: prompt.text.slice(0, -1) } };
  if (key !== 'enter') return key.length === 1 && key >= ' ' ? { ...view, prompt: { ...prompt, text: prompt.text + key } } : view;
  const text = prompt.text.trim();
  const done = { ...view, prompt: null, message: null };
  if (text === '') return { ...done, [prompt.field]: null };
  switch (prompt.field) {
    case 'port': {
      const n = Number(text);
      if (!/^\d+$/.test(text) || n < 1 || n > 65535) return { ...view, prompt: null, message: `'${text}' is not a port: give a number from 1 to 65535` };
      return { ...done, port: n };
    }
    case 'netns': {
      if (/^\d+$/.test(text)) return { ...done, netns: Number(text) };
      try {
        return { ...done, netns: ctx.resolveNetns(text) };
      } catch (err) {
        return { ...view, prompt: null, message: (err as Error).message };
      }
    }
    case 'process':
      return { ...done, process: text };
  }
}

/** True when a socket passes the view's filters. */
export function socketMatches(s: SocketRow, view: ViewState): boolean {
  if (view.host !== null && s.host !== view.host) return false;
  if (view.netns !== null && s.netns !== view.netns) return false;
  if (view.port !== null && s.sport !== view.port && s.dport !== view.port) return false;
  if (view.process !== null) {
    const p = view.process.toLowerCase();
    const byPid = /^\d+$/.test(p) && s.ownerPid === Number(p);
    if (!byPid && !(s.ownerComm ?? '').toLowerCase().includes(p)) return false;
  }
  return true;
}
