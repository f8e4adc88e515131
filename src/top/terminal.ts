/**
 * The terminal, with ANSI escape codes only (no terminfo, so it works over any SSH session):
 * the alternate screen, a hidden cursor, raw-mode keys, and a frame drawn from the top-left
 * corner each time. `restore` puts everything back and is safe to call more than once — on
 * `q`, on SIGINT/SIGTERM/SIGHUP, on an error, and at process exit as the last resort.
 */
import type { Line, LineStyle } from './render.js';
import type { Key } from './view.js';

const CSI = '\x1b[';
export const ENTER_ALT = `${CSI}?1049h`;
export const LEAVE_ALT = `${CSI}?1049l`;
const HIDE_CURSOR = `${CSI}?25l`;
const SHOW_CURSOR = `${CSI}?25h`;
const HOME = `${CSI}H`;
const CLEAR_EOL = `${CSI}K`;
const CLEAR_BELOW = `${CSI}J`;
const RESET = `${CSI}0m`;

const SGR: Record<LineStyle, string> = {
  header: `${CSI}7m`, // reverse video
  title: `${CSI}1m`, // bold
  columns: `${CSI}4m`, // underline
  alert: `${CSI}1;31m`, // bold red
  dim: `${CSI}2m`,
  prompt: `${CSI}7m`,
};

/**
 * NO_COLOR (no-color.org: set and not empty) asks for no colour: red is the only one, so alerts
 * stay bold; reverse video, bold and underline are attributes, not colours, and keep the layout legible.
 */
const SGR_NO_COLOR: Record<LineStyle, string> = { ...SGR, alert: `${CSI}1m` };

/** How a frame is drawn: with colour, attributes only (NO_COLOR), or as plain text (not a terminal). */
export type FrameStyle = 'color' | 'no-color' | 'plain';

/** The frame style for a terminal, from the environment (NO_COLOR set and not empty: no colour). */
export const terminalStyle = (env: NodeJS.ProcessEnv = process.env): FrameStyle => (env.NO_COLOR ? 'no-color' : 'color');

/** Raw-mode input → keys. Escape sequences of arrow and function keys become one name each. */
export function parseKeys(data: string): Key[] {
  const keys: Key[] = [];
  for (let i = 0; i < data.length; i++) {
    const c = data[i]!;
    if (c === '\x1b') {
      // CSI or SS3 sequence: ESC [ params final, or ESC O x
      if (data[i + 1] === '[' || data[i + 1] === 'O') {
        let j = i + 2;
        while (j < data.length && !/[A-Za-z~]/.test(data[j]!)) j++;
        const final = data[j];
        keys.push(({ A: 'up', B: 'down', C: 'right', D: 'left' } as Record<string, string>)[final ?? ''] ?? 'unknown');
        i = j;
      } else keys.push('escape');
    } else if (c === '\r' || c === '\n') keys.push('enter');
    else if (c === '\x7f' || c === '\b') keys.push('backspace');
    else if (c === '\t') keys.push('tab');
    else if (c === '\x03') keys.push('ctrl-c');
    else if (c === '\x04') keys.push('ctrl-d');
    else keys.push(c);
  }
  return keys;
}

/** A frame as one write: every line overwritten in place, the rest of the screen cleared. */
export function frame(lines: readonly Line[], style: FrameStyle): string {
  const sgr = style === 'no-color' ? SGR_NO_COLOR : SGR;
  const body = lines.map((l) => (style !== 'plain' && l.style ? `${sgr[l.style]}${l.text}${RESET}` : l.text) + CLEAR_EOL).join('\r\n');
  return `${HOME}${body}${CLEAR_BELOW}`;
}

/** The full-screen terminal. */
export class Screen {
  private active = false;
  private readonly onExit = () => this.restore();

  constructor(
    private readonly out: NodeJS.WriteStream,
    private readonly input: NodeJS.ReadStream,
    private readonly style: FrameStyle = terminalStyle(),
  ) {}

  get cols(): number {
    return this.out.columns || 80;
  }

  get rows(): number {
    return this.out.rows || 24;
  }

  /** Switches to the alternate screen and raw keys; `onKey` gets each key. */
  enter(onKey: (key: Key) => void, onResize: () => void): void {
    this.active = true;
    process.on('exit', this.onExit);
    this.out.write(`${ENTER_ALT}${HIDE_CURSOR}${CSI}2J`);
    if (this.input.isTTY) {
      this.input.setRawMode(true);
      this.input.setEncoding('utf8');
      this.input.on('data', (d: string) => {
        for (const k of parseKeys(d)) onKey(k);
      });
      this.input.resume();
    }
    this.out.on('resize', onResize);
  }

  draw(lines: readonly Line[]): void {
    if (this.active) this.out.write(frame(lines, this.style));
  }

  /** Leaves the alternate screen, shows the cursor, ends raw mode. Idempotent. */
  restore(): void {
    if (!this.active) return;
    this.active = false;
    process.off('exit', this.onExit);
    try {
      if (this.input.isTTY) this.input.setRawMode(false);
    } catch {
      // stdin already gone
    }
    this.input.pause();
    this.input.removeAllListeners('data');
    this.out.write(`${RESET}${SHOW_CURSOR}${LEAVE_ALT}`);
  }
}
