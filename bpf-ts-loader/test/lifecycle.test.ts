import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { MAIN_OBJ, PKG_DIR, describeBpf } from './helpers.js';

interface Run { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; ms: number; timedOut: boolean }

/** Runs test/child.cjs <scenario>; kills it after timeoutMs (timedOut = it did not exit on its own). */
function runChild(scenario: string, timeoutMs: number): Promise<Run> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--expose-gc', join(PKG_DIR, 'test', 'child.cjs'), scenario, MAIN_OBJ],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started, timedOut });
    });
  });
}

describeBpf('RingBufferReader lifecycle (child processes)', () => {
  it('an unref()\'d reader does not keep the process alive', async () => {
    const r = await runChild('unref', 5000);
    expect(r).toMatchObject({ timedOut: false, code: 0, stderr: '' });
    expect(r.stdout).toBe('batch 3\n');
  }, 10_000);

  it('after close() no handle keeps the process alive, though the object stays open', async () => {
    const r = await runChild('close', 5000);
    expect(r).toMatchObject({ timedOut: false, code: 0, stderr: '' });
    expect(r.stdout).toBe('batch 3\n');
  }, 10_000);

  it('an open, ref\'d reader keeps the process alive', async () => {
    const r = await runChild('keepalive', 1500);
    expect(r.stdout).toBe('ready\n');
    expect(r.timedOut).toBe(true);
  }, 10_000);

  it('an open reader with no JS reference survives GC and keeps delivering', async () => {
    const r = await runChild('gc', 5000);
    expect(r).toMatchObject({ timedOut: false, code: 0, stderr: '' });
    expect(r.stdout).toBe('gc done\nbatch 2\n');
  }, 10_000);

  it('a throwing onBatch surfaces as uncaughtException and the reader keeps going', async () => {
    const r = await runChild('throw', 5000);
    expect(r).toMatchObject({ timedOut: false, code: 0, stderr: '' });
    expect(r.stdout).toBe('caught boom from onBatch\ncaught boom from onBatch\n');
  }, 10_000);

  it('without a handler, a throwing onBatch crashes the process like any uncaught error', async () => {
    const r = await runChild('throw-unhandled', 5000);
    expect(r.timedOut).toBe(false);
    expect(r.code).toBe(1);
    expect(r.signal).toBeNull();
    expect(r.stderr).toContain('Error: boom from onBatch');
  }, 10_000);

  it('process.exit() with an open reader exits cleanly', async () => {
    const r = await runChild('exit-open', 5000);
    expect(r).toMatchObject({ timedOut: false, code: 0, signal: null, stdout: 'batch\n', stderr: '' });
  }, 10_000);

  it('terminating a worker that holds an open reader does not crash the process', async () => {
    const r = await runChild('worker', 5000);
    expect(r).toMatchObject({ timedOut: false, code: 0, signal: null, stderr: '' });
    expect(r.stdout).toBe('batch 2\nworker exited 1\n');
  }, 10_000);
});
