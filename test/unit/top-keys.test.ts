import { describe, expect, it } from 'vitest';
import { handleKey, initialView, type KeyContext, type ViewState } from '../../src/top/view.js';

const ctx: KeyContext = {
  hosts: ['a', 'b'],
  resolveNetns: (spec) => {
    if (spec === 'web') return 4026532177;
    throw new Error(`--netns ${spec}: no such network namespace`);
  },
  explainTarget: () => 'CLOSE_WAIT',
};

function press(keys: string[], view: ViewState = initialView()) {
  let v = view;
  let quit = false;
  for (const k of keys) ({ view: v, quit } = handleKey(v, k, ctx));
  return { view: v, quit };
}

describe('top: what keys do', () => {
  it('q and Ctrl-C quit', () => {
    expect(press(['q']).quit).toBe(true);
    expect(press(['ctrl-c']).quit).toBe(true);
    expect(press(['p', 'ctrl-c']).quit).toBe(true);
  });

  it('s cycles the sort', () => {
    expect(['s', 's', 's', 's'].map((_, i, a) => press(a.slice(0, i + 1)).view.sort)).toEqual(['state', 'p99', 'trend', 'count']);
  });

  it('n, p and c take a filter, enter applies it, an empty one clears it', () => {
    expect(press(['p', '4', '4', '3', 'enter']).view).toMatchObject({ port: 443, prompt: null });
    expect(press(['c', 'n', 'g', 'x', 'enter']).view.process).toBe('ngx');
    expect(press(['n', '1', '2', 'enter']).view.netns).toBe(12);
    expect(press(['n', 'w', 'e', 'b', 'enter']).view.netns).toBe(4026532177);
    expect(press(['p', '8', 'enter', 'p', 'enter']).view.port).toBeNull();
    expect(press(['p', '8', 'backspace', '9', 'enter']).view.port).toBe(9);
  });

  it('a bad filter value leaves the filter as it was and says why', () => {
    expect(press(['p', 'h', 't', 't', 'p', 'enter']).view).toMatchObject({ port: null, message: "'http' is not a port: give a number from 1 to 65535" });
    expect(press(['n', 'z', 'enter']).view).toMatchObject({ netns: null, message: '--netns z: no such network namespace' });
    expect(press(['p', '9', 'escape']).view).toMatchObject({ port: null, prompt: null });
  });

  it('typing in a prompt does not trigger commands (q is text there)', () => {
    const r = press(['c', 'q', 'enter']);
    expect(r.quit).toBe(false);
    expect(r.view.process).toBe('q');
  });

  it('x clears every filter; space pauses; tab walks the hosts and back to all', () => {
    expect(press(['p', '1', 'enter', 'c', 'a', 'enter', 'x']).view).toMatchObject({ port: null, process: null, netns: null });
    expect(press([' ']).view.paused).toBe(true);
    expect(press([' ', ' ']).view.paused).toBe(false);
    expect(['tab', 'tab', 'tab'].map((_, i, a) => press(a.slice(0, i + 1)).view.host)).toEqual(['a', 'b', null]);
  });

  it('e opens the explanation of the newest alert\'s state, e or escape closes it; ? toggles help', () => {
    expect(press(['e']).view.explain).toBe('CLOSE_WAIT');
    expect(press(['e', 'e']).view.explain).toBeNull();
    expect(press(['e', 'escape']).view.explain).toBeNull();
    expect(press(['?']).view.help).toBe(true);
    expect(press(['?', '?']).view.help).toBe(false);
  });
});
