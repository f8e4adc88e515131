import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { TABLES } from '../../src/collect/schema.js';

/** The store's tables as docs/events.md lists them (from src/collect/schema.ts, the one source). */
export function renderStoreTables(): string {
  const out: string[] = [];
  for (const t of TABLES) {
    out.push(`#### \`${t.name}\``, '', `${t.doc[0]!.toUpperCase()}${t.doc.slice(1)}. Identity: (${t.key.join(', ')}).`, '', '| column | type | meaning |', '|---|---|---|');
    for (const c of t.columns) out.push(`| \`${c.name}\` | ${c.type}${c.nullable ? ', NULL' : ''} | ${c.doc} |`);
    out.push('');
  }
  return out.join('\n');
}

describe('docs/events.md', () => {
  it('lists every table and column of the store as src/collect/schema.ts has them', () => {
    const doc = readFileSync(new URL('../../docs/events.md', import.meta.url), 'utf8');
    const section = /<!-- store-tables -->\n([\s\S]*?)<!-- \/store-tables -->/.exec(doc)?.[1];
    expect(section, 'docs/events.md has no <!-- store-tables --> section').toBeDefined();
    expect(section!.trim()).toBe(renderStoreTables().trim());
  });
});
