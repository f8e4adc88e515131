// Preload for BENCH_PROFILE=1 (node --import bench/prof-hook.mjs dist/main.js trace ...): starts
// the V8 CPU profiler once tcpdwell says it is tracing, and writes the profile at exit to
// $BENCH_PROF_OUT. Not --cpu-prof: its sampling signal interrupts the BPF verifier, and the
// program load fails with EAGAIN.
import { Session } from 'node:inspector';
import { writeFileSync } from 'node:fs';

const out = process.env.BENCH_PROF_OUT;
const session = new Session();
session.connect();
let started = false;
const write = process.stderr.write.bind(process.stderr);
process.stderr.write = (chunk, ...rest) => {
  if (!started && /tracing TCP state transitions|: publishing to /.test(String(chunk))) {
    started = true;
    session.post('Profiler.enable', () => session.post('Profiler.start'));
  }
  return write(chunk, ...rest);
};
process.on('exit', () => {
  if (!started) return;
  // The in-thread inspector session answers synchronously, so this runs before exit.
  session.post('Profiler.stop', (err, res) => {
    if (!err && out) writeFileSync(out, JSON.stringify(res.profile));
  });
});
