import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../', import.meta.url));
const obj = `${root}bpf/.output/tcpdwell.bpf.o`;
const vmlinux = `${root}bpf/.output/vmlinux.h`;

describe('the TypeScript ABI is generated from bpf/tcpdwell.h', () => {
  it.skipIf(!existsSync(obj) && !process.env.CI)('src/kernel/abi.ts equals what the compiled object and the kernel say (run `make abi` if not)', () => {
    const fresh = execFileSync('node', [`${root}scripts/gen-abi.mjs`, obj, vmlinux]).toString();
    const committed = readFileSync(`${root}src/kernel/abi.ts`, 'utf8');
    expect(committed).toBe(fresh);
  });

  it('the header declares the sizes that the generated file carries', () => {
    const header = readFileSync(`${root}bpf/tcpdwell.h`, 'utf8');
    const generated = readFileSync(`${root}src/kernel/abi.ts`, 'utf8');
    const asserted = /sizeof\(struct tcpdwell_event\) == (\d+)/.exec(header)?.[1];
    expect(generated).toContain(`export const EVENT_SIZE = ${asserted};`);
  });
});
