/** The package version, for what the collector publishes (without loading the agent and its BPF addon). */
import { readFileSync } from 'node:fs';

export const AGENT_VERSION_COLLECT: string = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version;
