/**
 * The tree is the pipeline (docs/architecture.md): every import in src/ runs down the stages,
 * nothing imports in a circle, and the commands that have no business with the kernel never
 * load the native addon. Read from the sources with the TypeScript parser, so a new import
 * anywhere is checked the moment it is written.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { afterAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../', import.meta.url));
const src = join(root, 'src');

/**
 * The stages, lowest first. A module may import its own folder and any lower stage; the three
 * applications of the pipeline (agent, collect, top) share a rank and do not import each other.
 */
const RANK: Record<string, number> = { common: 0, kernel: 1, decode: 2, track: 3, publish: 4, agent: 5, collect: 5, top: 5, cli: 6, 'main.ts': 7 };
const ADDON = 'bpf-ts-loader';

interface Edge {
  from: string;
  to: string;
  /** import type / export type: erased at run time */
  typeOnly: boolean;
  /** import(): loaded when the code asks */
  dynamic: boolean;
}

const stageOf = (file: string) => relative(src, file).split('/')[0]!;

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    const p = join(dir, d.name);
    if (d.isDirectory()) return d.name === 'pb' ? [] : sources(p); // generated protobuf code: a leaf of publish
    return d.name.endsWith('.ts') ? [p] : [];
  });
}

/** Every import of a file: static, type-only and dynamic. */
export function importsOf(file: string, text = readFileSync(file, 'utf8')): Edge[] {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true);
  const out: Edge[] = [];
  // './x.js' is the source './x.ts' (NodeNext imports name the output); only generated code is .js.
  const target = (spec: string) => {
    if (!spec.startsWith('.')) return spec;
    const p = resolve(dirname(file), spec);
    return existsSync(p) ? p : p.replace(/\.js$/, '.ts');
  };
  const visit = (n: ts.Node) => {
    if ((ts.isImportDeclaration(n) || ts.isExportDeclaration(n)) && n.moduleSpecifier && ts.isStringLiteral(n.moduleSpecifier)) {
      const typeOnly = ts.isImportDeclaration(n) ? (n.importClause?.isTypeOnly ?? false) : n.isTypeOnly;
      out.push({ from: file, to: target(n.moduleSpecifier.text), typeOnly, dynamic: false });
    } else if (ts.isCallExpression(n) && n.expression.kind === ts.SyntaxKind.ImportKeyword && n.arguments[0] && ts.isStringLiteral(n.arguments[0])) {
      out.push({ from: file, to: target(n.arguments[0].text), typeOnly: false, dynamic: true });
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}

/** Where an import runs against the stages, or null when it runs downhill (or leaves src/). */
export function problemOf(e: Edge): string | null {
  if (!e.to.startsWith(src)) return null;
  const [a, b] = [stageOf(e.from), stageOf(e.to)];
  if (!(a in RANK)) return `${relative(root, e.from)} is in no stage folder`;
  if (!(b in RANK)) return `${relative(root, e.from)} imports ${relative(root, e.to)}, which is in no stage folder`;
  if (a === b && a !== 'main.ts') return null;
  if (RANK[b]! < RANK[a]!) return null;
  return `${relative(root, e.from)} (${a}) imports ${relative(root, e.to)} (${b}): imports run down the stages only`;
}

function graph(files: string[]) {
  const edges = files.flatMap((f) => importsOf(f));
  const byFrom = new Map<string, Edge[]>();
  for (const e of edges) byFrom.set(e.from, [...(byFrom.get(e.from) ?? []), e]);
  return { edges, byFrom };
}

/** The modules reachable from `start` along the edges `follow` takes. */
function closure(byFrom: Map<string, Edge[]>, start: string, follow: (e: Edge) => boolean): Set<string> {
  const seen = new Set<string>([start]);
  const todo = [start];
  while (todo.length) for (const e of byFrom.get(todo.pop()!) ?? []) if (follow(e) && !seen.has(e.to)) (seen.add(e.to), todo.push(e.to));
  return seen;
}

/** The first import cycle found, as a path, or null. */
function findCycle(byFrom: Map<string, Edge[]>, files: string[]): string[] | null {
  const state = new Map<string, 'open' | 'done'>();
  const path: string[] = [];
  const dfs = (f: string): string[] | null => {
    state.set(f, 'open');
    path.push(f);
    for (const e of byFrom.get(f) ?? []) {
      if (!e.to.startsWith(src)) continue;
      if (state.get(e.to) === 'open') return [...path.slice(path.indexOf(e.to)), e.to];
      if (!state.has(e.to)) {
        const c = dfs(e.to);
        if (c) return c;
      }
    }
    path.pop();
    state.set(f, 'done');
    return null;
  };
  for (const f of files) if (!state.has(f)) {
    const c = dfs(f);
    if (c) return c.map((p) => relative(root, p));
  }
  return null;
}

const files = sources(src);
const { edges, byFrom } = graph(files);
const atRunTime = (e: Edge) => !e.typeOnly;
const loadedAtStart = (e: Edge) => !e.typeOnly && !e.dynamic;

describe('the imports of src/ follow the pipeline', () => {
  it('src/ holds the entry point and the stage folders, nothing else', () => {
    expect(readdirSync(src).sort()).toEqual(Object.keys(RANK).sort());
  });

  it('every relative import resolves to a source file', () => {
    const missing = edges.filter((e) => e.to.startsWith(src) && !e.to.endsWith('/pb/tcpdwell.js') && !existsSync(e.to)).map((e) => `${relative(root, e.from)} → ${relative(root, e.to)}`);
    expect(missing).toEqual([]);
  });

  it('runs down the stages only: cli above agent, collect and top, above publish, track, decode, kernel, common', () => {
    expect(edges.map(problemOf).filter(Boolean)).toEqual([]);
  });

  it('imports each module once per file (values and types in one statement)', () => {
    const twice = files.flatMap((f) => {
      const seen = importsOf(f).filter((e) => !e.dynamic).map((e) => e.to);
      return [...new Set(seen.filter((t, i) => seen.indexOf(t) !== i))].map((t) => `${relative(root, f)} imports ${relative(root, t) || t} twice`);
    });
    expect(twice).toEqual([]);
  });

  it('has no import cycle (type imports included)', () => {
    expect(findCycle(byFrom, files)).toBeNull();
  });

  it('loads no native addon in collect/ or in top --nats, not even when asked (dynamic imports included)', () => {
    const fleetSide = [...files.filter((f) => stageOf(f) === 'collect'), join(src, 'top/fleet.ts')];
    for (const f of fleetSide) expect([...closure(byFrom, f, atRunTime)].filter((m) => m === ADDON), relative(root, f)).toEqual([]);
  });

  it('loads the kernel side only in the commands that run it: the command line itself loads no addon', () => {
    const atStart = closure(byFrom, join(src, 'main.ts'), loadedAtStart);
    expect(atStart.has(ADDON)).toBe(false);
    // ... while the agent does (the check is not vacuous).
    expect(closure(byFrom, join(src, 'agent/agent.ts'), loadedAtStart).has(ADDON)).toBe(true);
  });

  it('catches an import that runs up the stages, and a cycle', () => {
    const up = importsOf(join(src, 'kernel/x.ts'), "import { Tracker } from '../track/index.js';");
    expect(problemOf(up[0]!)).toMatch(/kernel\/x\.ts \(kernel\) imports src\/track\/index\.ts \(track\): imports run down the stages only/);
    const sideways = importsOf(join(src, 'top/x.ts'), "import type { Agent } from '../agent/agent.js';");
    expect(problemOf(sideways[0]!)).toMatch(/\(top\) imports .*\(agent\)/);
    const a = join(src, 'track/a.ts');
    const b = join(src, 'track/b.ts');
    const loop = new Map([
      [a, importsOf(a, "import { b } from './b.js';")],
      [b, importsOf(b, "import type { a } from './a.js';")],
    ]);
    expect(findCycle(loop, [a, b])).toEqual(['src/track/a.ts', 'src/track/b.ts', 'src/track/a.ts']);
  });
});

const built = existsSync(join(root, 'dist/main.js'));

describe.skipIf(!built && !process.env.CI)('at run time', () => {
  // Records every native module the process loads (process.dlopen), on stderr.
  const hook = join(tmpdir(), `tcpdwell-dlopen-${process.pid}.cjs`);
  afterAll(() => rmSync(hook, { force: true }));
  writeFileSync(hook, "const o = process.dlopen; process.dlopen = function (m, f, ...r) { require('fs').writeSync(2, `DLOPEN ${f}\\n`); return o.call(this, m, f, ...r); };\n");
  const run = (...args: string[]) => spawnSync(process.execPath, ['--require', hook, join(root, 'dist/main.js'), ...args], { encoding: 'utf8', timeout: 20_000 });
  const nowhere = 'nats://127.0.0.1:9'; // the discard port: nothing listens, the connect fails at once

  it.each([
    ['collect', '--nats', nowhere, '--duration', '1'],
    ['query', '--nats', nowhere],
    ['agents', '--nats', nowhere, '--timeout', '0.2'],
    ['tail', '--nats', nowhere, '--duration', '1'],
    ['top', '--nats', nowhere, '--duration', '1'],
    ['explain', 'CLOSE_WAIT'],
  ])('tcpdwell %s … loads no native addon', (...args) => {
    const r = run(...args);
    expect(r.stderr).not.toMatch(/DLOPEN/);
    expect(r.status === 0 || /cannot reach NATS/.test(r.stderr), r.stderr).toBe(true);
  });

  it('tcpdwell states does load it (so the check can fail)', () => {
    expect(run('states', '--netns', '/proc/self/ns/net').stderr).toMatch(/DLOPEN .*bpf_ts_loader\.node/);
  });
});
