import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { notifyServiceManager } from 'bpf-ts-loader';

// The service manager's end: a real AF_UNIX datagram socket (Python's, since Node has none)
// printing each datagram it receives as one JSON line, "bound" first.
const RECEIVER = `
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
a = sys.argv[1]
s.bind(a if a.startswith('/') else '\\0' + a[1:])
print(json.dumps('bound'), flush=True)
while True:
    print(json.dumps(s.recv(8192).decode()), flush=True)
`;

function receiver(address: string): Promise<{ child: ChildProcess; next(): Promise<string> }> {
  const child = spawn('/usr/bin/python3', ['-c', RECEIVER, address], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines: string[] = [];
  const waiters: ((l: string) => void)[] = [];
  let buf = '';
  child.stdout!.on('data', (d) => {
    buf += d;
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const l = JSON.parse(buf.slice(0, i));
      buf = buf.slice(i + 1);
      const w = waiters.shift();
      if (w) w(l);
      else lines.push(l);
    }
  });
  const next = () => new Promise<string>((resolve) => (lines.length ? resolve(lines.shift()!) : waiters.push(resolve)));
  return next().then(() => ({ child, next }));
}

describe('notifyServiceManager() (sd_notify without libsystemd)', () => {
  const cleanup: (() => void)[] = [];
  afterEach(() => cleanup.splice(0).forEach((f) => f()));

  it('sends each state as one datagram to a socket path, and to an abstract name', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bpf-ts-notify-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    for (const address of [join(dir, 'notify'), `@bpf-ts-notify-${process.pid}`]) {
      const r = await receiver(address);
      cleanup.push(() => r.child.kill());
      expect(notifyServiceManager('READY=1', address)).toBe(true);
      expect(await r.next()).toBe('READY=1');
      expect(notifyServiceManager('WATCHDOG=1\nSTATUS=12 events', address)).toBe(true);
      expect(await r.next()).toBe('WATCHDOG=1\nSTATUS=12 events');
    }
  });

  it('returns false without a socket (not run by a service manager), and says what failed otherwise', () => {
    const saved = process.env.NOTIFY_SOCKET;
    delete process.env.NOTIFY_SOCKET;
    try {
      expect(notifyServiceManager('READY=1')).toBe(false);
    } finally {
      if (saved !== undefined) process.env.NOTIFY_SOCKET = saved;
    }
    expect(() => notifyServiceManager('READY=1', '/nonexistent/notify')).toThrow(/sendto \$NOTIFY_SOCKET: No such file or directory \(ENOENT\)/);
    expect(() => notifyServiceManager('READY=1', 'relative')).toThrow(/^Usage: /);
    expect(() => notifyServiceManager('')).toThrow(/^Usage: /);
  });
});
