'use strict';
// Scenarios run in a separate node process by ringbuf-lifecycle.test.ts:
// they check what keeps the process alive and how exits/GC/throws behave.
// Usage: node child.cjs <scenario> <path/to/main.bpf.o>
const { readSync } = require('node:fs');
const path = require('node:path');
const { Worker, isMainThread, workerData } = require('node:worker_threads');
const { BpfObject, forEachRecord } = require(path.join(__dirname, '..'));

const MAGIC_FD = 0x7e000000;
const scenario = isMainThread ? process.argv[2] : workerData.scenario;
const objPath = isMainThread ? process.argv[3] : workerData.objPath;

function trigger(n) {
  try { readSync(MAGIC_FD, Buffer.alloc(1), 0, 1, n); } catch (e) { if (e.code !== 'EBADF') throw e; }
}

function openObject() {
  const obj = BpfObject.open(objPath);
  obj.setConstants({ target_tgid: process.pid });
  obj.load();
  obj.attachAll();
  return obj;
}

const say = (msg) => process.stdout.write(msg + '\n');

function main() {
  const obj = openObject();
  switch (scenario) {
    case 'unref': { // a ref'd reader that is unref'd must not keep the process alive
      const reader = obj.openRingBuffer('events', (b) => {
        say(`batch ${forEachRecord(b, () => {})}`);
        reader.unref();
      });
      trigger(3);
      break;
    }
    case 'close': { // closing the reader releases the loop even though the object stays open
      const reader = obj.openRingBuffer('events', (b) => {
        say(`batch ${forEachRecord(b, () => {})}`);
        reader.close();
      });
      trigger(3);
      break;
    }
    case 'keepalive': { // an open, ref'd reader keeps the process alive like a socket
      obj.openRingBuffer('events', () => {});
      say('ready');
      break;
    }
    case 'gc': { // an unreferenced open reader is not collected and keeps delivering
      (() => { obj.openRingBuffer('events', (b) => { say(`batch ${forEachRecord(b, () => {})}`); obj.close(); }); })();
      setTimeout(() => { global.gc(); say('gc done'); trigger(2); }, 20);
      break;
    }
    case 'throw': { // a throwing onBatch becomes an uncaughtException; the reader keeps running
      let n = 0;
      process.on('uncaughtException', (err) => {
        say(`caught ${err.message}`);
        if (++n === 2) obj.close(); else trigger(1);
      });
      obj.openRingBuffer('events', () => { throw new Error('boom from onBatch'); });
      trigger(1);
      break;
    }
    case 'throw-unhandled': {
      obj.openRingBuffer('events', () => { throw new Error('boom from onBatch'); });
      trigger(1);
      break;
    }
    case 'exit-open': { // process.exit() with an open reader runs the cleanup hooks without crashing
      obj.openRingBuffer('events', () => { say('batch'); process.exit(0); });
      trigger(1);
      break;
    }
    case 'worker': { // worker torn down with an open reader: the async cleanup hook must close the uv handles
      const obj2 = obj; // the main thread keeps its own object open meanwhile
      const w = new Worker(__filename, { workerData: { scenario: 'worker-child', objPath } });
      w.on('message', (m) => { say(m); if (m.startsWith('batch')) w.terminate(); });
      w.on('exit', (code) => { say(`worker exited ${code}`); obj2.close(); });
      break;
    }
    case 'worker-child': {
      const { parentPort } = require('node:worker_threads');
      obj.openRingBuffer('events', (b) => { parentPort.postMessage(`batch ${forEachRecord(b, () => {})}`); });
      trigger(2);
      break;
    }
    default:
      throw new Error(`unknown scenario ${scenario}`);
  }
}

main();
