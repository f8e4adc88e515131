// Connection scenarios for the kernel tests, run inside a test's network namespace:
//   ip netns exec NS node test/kernel/workload.mjs SCENARIO HOST PORT [ARG]
// Prints one JSON line when done: {"pid":..., "clientPort":..., ...}. Exits non-zero on surprise.
import net from 'node:net';
import { execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';

// The tests expect this process's comm (the socket owner's name) to be "node"; Node 24 names its
// main thread "MainThread". process.title sets the comm of this (the main) thread.
process.title = 'node';
const [scenario, host = '127.0.0.1', portArg = '0', arg] = process.argv.slice(2);
const port = Number(portArg);

function listen(opts = {}) {
  return new Promise((resolve, reject) => {
    const server = net.createServer(opts);
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}

function connect(opts = {}) {
  return new Promise((resolve, reject) => {
    const c = net.connect({ host, port, ...opts });
    c.once('connect', () => resolve(c));
    c.once('error', reject);
  });
}

const accepted = (server) => new Promise((resolve) => server.once('connection', resolve));
const closed = (sock) => new Promise((resolve) => (sock.destroyed ? resolve() : sock.once('close', resolve)));
const done = (extra = {}) => process.stdout.write(`${JSON.stringify({ pid: process.pid, ...extra })}\n`);

async function pair(serverOpts, clientOpts) {
  const server = await listen(serverOpts);
  const [client, child] = await Promise.all([connect(clientOpts), accepted(server)]);
  return { server, client, child };
}

switch (scenario) {
  // The client closes first: client FIN_WAIT1 -> FIN_WAIT2 -> (timewait), server child CLOSE_WAIT -> LAST_ACK.
  // The server closes first: the child goes through FIN_WAIT and into timewait.
  // The client aborts with RST (SO_LINGER 0): no FIN exchange, no timewait.
  case 'client-first':
  case 'server-first':
  case 'rst': {
    const { server, client, child } = await pair();
    const clientPort = client.localPort;
    if (scenario === 'client-first') client.end();
    else if (scenario === 'server-first') child.end();
    else {
      child.on('error', () => {});
      client.resetAndDestroy();
    }
    await Promise.all([closed(client), closed(child)]);
    server.close();
    done({ clientPort });
    break;
  }
  // ARG connections, each aborted by its client with RST (SO_LINGER 0), one after the other.
  case 'rsts': {
    const n = Number(arg ?? 1);
    const server = await listen();
    server.on('connection', (s) => s.on('error', () => {}));
    for (let i = 0; i < n; i++) {
      const [client, child] = await Promise.all([connect(), accepted(server)]);
      client.resetAndDestroy();
      await closed(child);
    }
    server.close();
    done({ connections: n });
    break;
  }
  // Nobody listens on the port: SYN_SENT -> CLOSE with ECONNREFUSED.
  case 'refused': {
    const err = await connect().then(
      (c) => {
        c.destroy();
        return null;
      },
      (e) => e,
    );
    if (!err || err.code !== 'ECONNREFUSED') throw new Error(`expected ECONNREFUSED, got ${err?.code ?? 'a connection'}`);
    done({ code: err.code });
    break;
  }
  // The server holds the connection in CLOSE_WAIT for ARG ms after the client's FIN, then closes.
  // 'orphan': the client closes its socket outright while the server holds CLOSE_WAIT for ARG ms:
  // the orphaned client becomes a timewait sock in substate FIN_WAIT2 at once, and the server's
  // FIN later flips it to TIME_WAIT (re-arming its timer; no new timewait).
  case 'close-wait':
  case 'orphan': {
    const holdMs = Number(arg ?? (scenario === 'orphan' ? 2500 : 300));
    const { server, client, child } = await pair({ allowHalfOpen: true });
    const clientPort = client.localPort;
    child.on('end', async () => {
      await sleep(holdMs);
      child.end();
    });
    child.resume();
    if (scenario === 'orphan') {
      client.destroy();
      await closed(child);
    } else {
      client.end();
      await Promise.all([closed(client), closed(child)]);
    }
    server.close();
    done({ clientPort, holdMs });
    break;
  }
  // Simultaneous close: both ends shut down while an nftables rule in this namespace drops
  // every FIN on the port; once the rule is gone the retransmitted FINs cross, and each end
  // goes FIN_WAIT1 -> CLOSING -> (timewait). Needs nft (Debian nftables).
  case 'simultaneous': {
    const { server, client, child } = await pair({ allowHalfOpen: true }, { allowHalfOpen: true });
    const clientPort = client.localPort;
    const nft = (...a) => execFileSync('nft', a);
    nft('add', 'table', 'inet', 'tcpdwell_sim');
    nft('add', 'chain', 'inet', 'tcpdwell_sim', 'out', '{ type filter hook output priority 0; }');
    nft('add', 'rule', 'inet', 'tcpdwell_sim', 'out', 'tcp', 'flags', '&', 'fin', '==', 'fin', 'tcp', 'dport', String(port), 'drop');
    nft('add', 'rule', 'inet', 'tcpdwell_sim', 'out', 'tcp', 'flags', '&', 'fin', '==', 'fin', 'tcp', 'sport', String(port), 'drop');
    client.resume();
    child.resume();
    client.end();
    child.end();
    // Both ends must have sent (and lost) their FIN before the rule goes: wait until ss shows
    // both in FIN-WAIT-1 (a fixed sleep raced on a loaded machine).
    const bothInFinWait1 = () =>
      execFileSync('ss', ['-Htn', 'state', 'fin-wait-1', `( sport = :${port} or dport = :${port} )`], { encoding: 'utf8' })
        .trim()
        .split('\n')
        .filter(Boolean).length === 2;
    for (let i = 0; i < 500 && !bothInFinWait1(); i++) await sleep(10);
    nft('delete', 'table', 'inet', 'tcpdwell_sim');
    await Promise.all([closed(client), closed(child)]);
    server.close();
    done({ clientPort });
    break;
  }
  // Leaves N connections closed client-first, so N timewait socks remain; then holds a listener
  // and one established pair open until stdin closes (for snapshots of existing sockets).
  case 'hold': {
    const n = Number(arg ?? 1);
    const server = await listen();
    for (let i = 0; i < n; i++) {
      const c = await connect();
      c.end();
      await closed(c);
    }
    const c = await connect();
    done({ clientPort: c.localPort });
    process.stdin.resume();
    await new Promise((resolve) => process.stdin.once('end', resolve));
    c.destroy();
    server.close();
    break;
  }
  // ARG connections as fast as possible, client-first close (bursts for the drop test).
  case 'burst': {
    const n = Number(arg ?? 1000);
    const server = await listen();
    server.on('connection', (s) => s.on('error', () => {}).resume());
    for (let i = 0; i < n; i += 50) {
      await Promise.all(
        Array.from({ length: Math.min(50, n - i) }, async () => {
          const c = await connect();
          c.end();
          await closed(c);
        }),
      );
    }
    server.close();
    done({ connections: n });
    break;
  }
  // A mix that stays until stdin closes, for comparing the live table with ss: a listener,
  // ARG = "E,T,C": E established pairs, T connections closed client-first (T TIME_WAIT), and C
  // connections the client half-closes while the server never closes (C CLOSE_WAIT held by this
  // process, C client FIN_WAIT2).
  case 'mix': {
    const [est, tw, cw] = (arg ?? '2,2,2').split(',').map(Number);
    let hold = false;
    let ended = 0;
    const children = [];
    const server = await listen({ allowHalfOpen: true });
    server.on('connection', (s) => {
      const keep = hold;
      children.push(s);
      s.on('error', () => {});
      s.on('end', () => {
        ended++;
        if (!keep) s.end();
      });
      s.resume();
    });
    const clients = [];
    for (let i = 0; i < tw; i++) {
      const c = await connect();
      c.end();
      await closed(c);
    }
    for (let i = 0; i < est; i++) clients.push(await connect());
    hold = true;
    for (let i = 0; i < cw; i++) {
      const c = await connect();
      c.end();
      clients.push(c);
    }
    while (ended < tw + cw) await sleep(5);
    done({ port });
    process.stdin.resume();
    await new Promise((resolve) => process.stdin.once('end', resolve));
    for (const c of [...clients, ...children]) c.destroy();
    server.close();
    break;
  }
  default:
    console.error(`unknown scenario ${scenario}`);
    process.exit(2);
}
