'use strict';
// bpf-ts-loader: typed wrapper over the native libbpf shim in src/binding.c.
// The native side only moves bytes; validation, error wording and record
// framing helpers live here.

const path = require('node:path');
const os = require('node:os');

function loadNative() {
  const candidates = [
    path.join(__dirname, 'build', 'Release', 'bpf_ts_loader.node'),
    path.join(__dirname, 'build', 'Debug', 'bpf_ts_loader.node'),
  ];
  const failures = [];
  for (const file of candidates) {
    try {
      return require(file);
    } catch (err) {
      if (err && err.code === 'MODULE_NOT_FOUND') {
        failures.push(`${file} (not found)`);
        continue;
      }
      // Present but unloadable (e.g. libbpf.so.1 missing): that is the real problem.
      throw new Error(`bpf-ts-loader: could not load ${file}: ${err.message}. ` +
        'Is libbpf installed (Debian/Ubuntu: apt-get install libbpf1 libelf1 zlib1g)? ' +
        'Rebuild with `npm rebuild bpf-ts-loader`.', { cause: err });
    }
  }
  throw new Error('bpf-ts-loader: native module not built. Tried:\n  ' + failures.join('\n  ') +
    '\nBuild it with `npm rebuild bpf-ts-loader` (needs libbpf-dev, libelf-dev, zlib1g-dev, make and a C compiler).');
}

const native = loadNative();

const RECORD_HEADER_BYTES = 8;
const LIBBPF_CODES = ['LIBBPF_ERRNO__LIBELF', 'LIBBPF_ERRNO__FORMAT', 'LIBBPF_ERRNO__KVERSION',
  'LIBBPF_ERRNO__ENDIAN', 'LIBBPF_ERRNO__INTERNAL', 'LIBBPF_ERRNO__RELOC', 'LIBBPF_ERRNO__LOAD',
  'LIBBPF_ERRNO__VERIFY', 'LIBBPF_ERRNO__PROG2BIG', 'LIBBPF_ERRNO__KVER', 'LIBBPF_ERRNO__PROGTYPE',
  'LIBBPF_ERRNO__WRNGPID', 'LIBBPF_ERRNO__INVSEQ', 'LIBBPF_ERRNO__NLPARSE'];
const ERRNO_NAMES = new Map();
for (const [name, num] of Object.entries(os.constants.errno)) {
  if (!ERRNO_NAMES.has(num)) ERRNO_NAMES.set(num, name);
}

function errnoCode(errno) {
  if (errno >= 4000 && errno < 4000 + LIBBPF_CODES.length) return LIBBPF_CODES[errno - 4000];
  return ERRNO_NAMES.get(errno);
}

const CAPS_HINT = 'loading BPF programs needs root, or CAP_BPF + CAP_PERFMON ' +
  '(+ CAP_NET_ADMIN for networking program types and socket storage maps, ' +
  '+ CAP_SYS_ADMIN for some iterator and tracing types, ' +
  '+ CAP_SYS_RESOURCE (or a higher RLIMIT_MEMLOCK) on kernels before 5.11 that charge BPF memory to memlock)';

class BpfError extends Error {
  constructor(message, options = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    if (options.errno !== undefined) this.errno = options.errno;
    if (options.code !== undefined) this.code = options.code;
  }
}

class BpfLoadError extends BpfError {
  constructor(message, options = {}) {
    super(message, options);
    this.verifierLog = options.verifierLog ?? '';
  }
}

// Last lines libbpf printed outside the verifier's own log: usually the reason.
function libbpfSummary(log, maxLines = 3) {
  if (!log) return '';
  const lines = [];
  let inProgLog = false;
  let lastVerifierLine = '';
  for (const raw of log.split('\n')) {
    const line = raw.trimEnd().replace(/^libbpf: /, '');
    if (line.includes('-- BEGIN PROG LOAD LOG --')) { inProgLog = true; continue; }
    if (line.includes('-- END PROG LOAD LOG --')) { inProgLog = false; continue; }
    if (!line) continue;
    if (inProgLog) {
      if (!/^(processed \d+ insns|verification time|stack depth|max_states_per_insn)/.test(line)) lastVerifierLine = line;
    } else {
      lines.push(line);
    }
  }
  const tail = lines.slice(-maxLines);
  if (lastVerifierLine) tail.unshift(`verifier: ${lastVerifierLine}`);
  return tail.join(' | ');
}

// Turns the native { errno, op, libbpfLog } Error into a typed one with advice.
function wrapNative(err, what, advice, Kind = BpfError) {
  if (err && !(err instanceof TypeError) && typeof err.code === 'string' && err.code.startsWith('ERR_BPF_')) {
    return new BpfError(`${what}: ${err.message}`, { cause: err, code: err.code });
  }
  if (!err || typeof err.errno !== 'number') return err;
  const code = errnoCode(err.errno);
  const summary = libbpfSummary(err.libbpfLog);
  let text = `${what}: ${code ?? 'errno ' + err.errno} (${err.message.replace(/^[^:]*: /, '')})`;
  if (summary) text += ` — libbpf: ${summary}`;
  const hint = typeof advice === 'function' ? advice(code) : advice;
  if (hint) text += `. ${hint}`;
  const opts = { cause: err, errno: err.errno, code };
  if (Kind === BpfLoadError) opts.verifierLog = err.libbpfLog ?? '';
  return new Kind(text, opts);
}

function call(what, advice, fn, Kind) {
  try {
    return fn();
  } catch (err) {
    throw wrapNative(err, what, advice, Kind);
  }
}

function checkString(value, usage) {
  if (typeof value !== 'string' || value.length === 0) throw new TypeError(`Usage: ${usage}`);
}

function knownList(names) {
  return names.length ? names.map((n) => `'${n}'`).join(', ') : '(none)';
}

const INT_RANGE = new Map([1, 2, 4, 8].map((size) => {
  const bits = BigInt(size * 8);
  return [size, [-(1n << (bits - 1n)), (1n << bits) - 1n]];
}));

function encodeConstant(name, value, size) {
  if (Buffer.isBuffer(value)) {
    if (value.length !== size) {
      throw new TypeError(`Usage: setConstants(): '${name}' is ${size} bytes, got a Buffer of ${value.length}`);
    }
    return value;
  }
  let v;
  if (typeof value === 'boolean') v = value ? 1n : 0n;
  else if (typeof value === 'bigint') v = value;
  else if (typeof value === 'number' && Number.isSafeInteger(value)) v = BigInt(value);
  else {
    throw new TypeError(`Usage: setConstants(): '${name}' must be an integer number, bigint, boolean or Buffer`);
  }
  const range = INT_RANGE.get(size);
  if (!range) {
    throw new TypeError(`Usage: setConstants(): '${name}' is ${size} bytes; pass a Buffer of exactly that size`);
  }
  if (v < range[0] || v > range[1]) {
    throw new TypeError(`Usage: setConstants(): ${value} does not fit in '${name}' (${size} bytes)`);
  }
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt.asUintN(64, v));
  return b.subarray(0, size);
}

const FLAGS = { any: 0, noexist: 1, exist: 2 };
const PERCPU_TYPES = new Set([5, 6, 10]); // PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH
let possibleCpusCache;

function possibleCpus() {
  if (possibleCpusCache === undefined) {
    possibleCpusCache = call('libbpf_num_possible_cpus', 'is /sys/devices/system/cpu/possible readable?',
      () => native.possibleCpus());
  }
  return possibleCpusCache;
}

class BpfObject {
  #h;
  #path;

  constructor(handle, file) {
    if (!handle) throw new TypeError('Usage: BpfObject.open(path) — the constructor is internal');
    this.#h = handle;
    this.#path = file;
  }

  static open(file) {
    checkString(file, 'BpfObject.open(path: string)');
    const handle = call(`BpfObject.open(${JSON.stringify(file)})`, (code) => {
      if (code === 'ENOENT') return 'The file does not exist: build the BPF object first or fix the path';
      if (code === 'EACCES' || code === 'EPERM') return 'The file is not readable by this user';
      if (code === 'LIBBPF_ERRNO__FORMAT' || code === 'LIBBPF_ERRNO__LIBELF' || code === 'EINVAL' || code === 'ENOTSUP' || code === 'EOPNOTSUPP') {
        return 'It is not a valid BPF ELF object: compile it with `clang -g -O2 -target bpf -c prog.bpf.c -o prog.bpf.o`';
      }
      return undefined;
    }, () => native.open(file));
    return new BpfObject(handle, file);
  }

  get path() { return this.#path; }

  programs() { return call('programs()', null, () => native.programs(this.#h)); }

  programStats() { return call('programStats()', null, () => native.programStats(this.#h)); }
  maps() { return call('maps()', null, () => native.maps(this.#h)); }
  constants() { return call('constants()', null, () => native.constants(this.#h)); }

  setConstants(values) {
    if (values === null || typeof values !== 'object' || Array.isArray(values)) {
      throw new TypeError('Usage: setConstants({ name: number | bigint | boolean | Buffer, ... })');
    }
    const known = this.constants();
    const writes = [];
    for (const [name, value] of Object.entries(values)) {
      const info = known.find((c) => c.name === name);
      if (!info) {
        throw new TypeError(`Usage: setConstants(): no global variable named '${name}' in ${this.#path}; ` +
          `known: ${knownList(known.map((c) => c.name))}`);
      }
      writes.push([info, encodeConstant(name, value, info.size)]);
    }
    // Validate everything first so a bad entry leaves the object untouched.
    for (const [info, bytes] of writes) {
      call('setConstants()', null, () => native.setData(this.#h, info.section, info.offset, bytes));
    }
  }

  setMaxEntries(map, maxEntries) {
    checkString(map, 'setMaxEntries(map: string, maxEntries: number)');
    if (!Number.isInteger(maxEntries) || maxEntries < 1 || maxEntries > 0xffffffff) {
      throw new TypeError('Usage: setMaxEntries(map: string, maxEntries: positive integer)');
    }
    this.#knownMap(map);
    call(`setMaxEntries('${map}')`, (c) => c === 'EBUSY' ? 'call it before load()' : undefined,
      () => native.setMaxEntries(this.#h, map, maxEntries));
  }

  setAutoload(program, autoload) {
    checkString(program, 'setAutoload(program: string, autoload: boolean)');
    if (typeof autoload !== 'boolean') throw new TypeError('Usage: setAutoload(program: string, autoload: boolean)');
    this.#knownProgram(program);
    call(`setAutoload('${program}')`, (c) => c === 'EINVAL' || c === 'EBUSY' ? 'call it before load()' : undefined,
      () => native.setAutoload(this.#h, program, autoload));
  }

  setPinPath(map, pinPath) {
    checkString(map, 'setPinPath(map: string, path: string | null)');
    if (pinPath !== null && (typeof pinPath !== 'string' || pinPath.length === 0)) {
      throw new TypeError('Usage: setPinPath(map: string, path: string | null)');
    }
    this.#knownMap(map);
    call(`setPinPath('${map}')`, null, () => native.setPinPath(this.#h, map, pinPath));
  }

  load() {
    call(`load(${JSON.stringify(this.#path)})`, (code) => {
      if (code === 'EPERM') return CAPS_HINT;
      if (code === 'EACCES' || code === 'EINVAL' || code === 'LIBBPF_ERRNO__VERIFY' || code === 'E2BIG') {
        return 'The kernel verifier rejected a program; the full log is in err.verifierLog';
      }
      if (code === 'ESRCH' || code === 'ENOENT') {
        return 'A BTF type, kernel function or tracepoint the object needs is missing on this kernel';
      }
      return undefined;
    }, () => native.load(this.#h), BpfLoadError);
  }

  attach(program) {
    checkString(program, 'attach(program: string)');
    this.#knownProgram(program);
    const section = this.programs().find((p) => p.name === program)?.section ?? '';
    call(`attach('${program}')`, (code) => attachAdvice(code, section), () => native.attach(this.#h, program));
  }

  attachAll() {
    call('attachAll()', (code) => attachAdvice(code, ''), () => native.attachAll(this.#h));
  }

  map(name) {
    checkString(name, 'map(name: string)');
    return new BpfMap(this.#h, this.#knownMap(name));
  }

  runIterator(program, options = {}) {
    checkString(program, 'runIterator(program: string, options?: { netnsPath?: string })');
    const netnsPath = options?.netnsPath;
    if (netnsPath !== undefined && (typeof netnsPath !== 'string' || netnsPath === '')) {
      throw new TypeError('Usage: runIterator(): options.netnsPath must be a path such as /run/netns/NAME or /proc/PID/ns/net');
    }
    const info = this.#knownProgram(program);
    if (!info.section.startsWith('iter')) {
      throw new TypeError(`Usage: runIterator(): '${program}' is in section '${info.section}', not an iter/... program`);
    }
    return call(`runIterator('${program}')`, null, () => native.runIterator(this.#h, program, netnsPath));
  }

  openRingBuffer(map, onBatch, options = {}) {
    checkString(map, 'openRingBuffer(map: string, onBatch: (batch: Buffer) => void, options?)');
    if (typeof onBatch !== 'function') {
      throw new TypeError('Usage: openRingBuffer(map: string, onBatch: (batch: Buffer) => void, options?)');
    }
    const { pollIntervalMs = 10, maxBatchBytes = 1 << 20 } = options ?? {};
    if (!Number.isInteger(pollIntervalMs) || pollIntervalMs < 0 || pollIntervalMs > 0x7fffffff) {
      throw new TypeError('Usage: openRingBuffer(): options.pollIntervalMs must be an integer >= 0');
    }
    if (!Number.isInteger(maxBatchBytes) || maxBatchBytes < 64 || maxBatchBytes > 0x40000000) {
      throw new TypeError('Usage: openRingBuffer(): options.maxBatchBytes must be an integer in [64, 1 GiB]');
    }
    const info = this.#knownMap(map);
    if (info.typeName !== 'ringbuf') {
      throw new TypeError(`Usage: openRingBuffer(): '${map}' is a ${info.typeName} map, not a ringbuf`);
    }
    const handle = call(`openRingBuffer('${map}')`, null,
      () => native.ringOpen(this.#h, map, onBatch, pollIntervalMs, maxBatchBytes));
    return new RingBufferReader(handle);
  }

  close() {
    native.close(this.#h);
  }

  #knownMap(name) {
    const maps = this.maps();
    const info = maps.find((m) => m.name === name);
    if (!info) throw new TypeError(`Usage: no map named '${name}'; known maps: ${knownList(maps.map((m) => m.name))}`);
    return info;
  }

  #knownProgram(name) {
    const progs = this.programs();
    const info = progs.find((p) => p.name === name);
    if (!info) {
      throw new TypeError(`Usage: no program named '${name}'; known programs: ${knownList(progs.map((p) => p.name))}`);
    }
    return info;
  }
}

function attachAdvice(code, section) {
  if (code === 'EPERM') return CAPS_HINT;
  if (code === 'ENOENT' && /^(tp|tracepoint)\//.test(section)) {
    return 'classic tracepoints need tracefs: mount -t tracefs nodev /sys/kernel/tracing (or use tp_btf/ or raw_tp/)';
  }
  if (code === 'ENOENT' || code === 'ESRCH') return 'the attach target does not exist on this kernel';
  if (code === 'EOPNOTSUPP' || code === 'ENOTSUP') {
    return 'libbpf cannot auto-attach this section type, or the kernel does not support it';
  }
  return undefined;
}

class BpfMap {
  #h;

  constructor(handle, info) {
    if (!handle || !info) throw new TypeError('Usage: use bpfObject.map(name) to get a BpfMap');
    this.#h = handle;
    this.name = info.name;
    this.type = info.type;
    this.typeName = info.typeName;
    this.keySize = info.keySize;
    this.valueSize = info.valueSize;
    this.maxEntries = info.maxEntries;
    this.perCpu = PERCPU_TYPES.has(info.type);
    this.possibleCpus = possibleCpus();
    Object.freeze(this);
  }

  #key(key, method) {
    if (!Buffer.isBuffer(key) || key.length !== this.keySize) {
      throw new TypeError(`Usage: ${method}(key: Buffer of ${this.keySize} bytes) on map '${this.name}'`);
    }
  }

  lookup(key) {
    this.#key(key, 'lookup');
    return call(`map '${this.name}': lookup`, null, () => native.mapLookup(this.#h, this.name, key));
  }

  lookupPerCpu(key) {
    if (!this.perCpu) throw new TypeError(`Usage: lookupPerCpu() is for per-CPU maps; '${this.name}' is ${this.typeName}`);
    const raw = this.lookup(key);
    if (raw === undefined) return undefined;
    const slot = (this.valueSize + 7) & ~7;
    const out = [];
    for (let cpu = 0; cpu < this.possibleCpus; cpu++) out.push(raw.subarray(cpu * slot, cpu * slot + this.valueSize));
    return out;
  }

  update(key, value, flags = 'any') {
    this.#key(key, 'update');
    const expected = this.perCpu ? ((this.valueSize + 7) & ~7) * this.possibleCpus : this.valueSize;
    if (!Buffer.isBuffer(value) || value.length !== expected) {
      throw new TypeError(`Usage: update(key, value: Buffer of ${expected} bytes, flags?) on map '${this.name}'` +
        (this.perCpu ? ' (per-CPU: one 8-byte-aligned slot per possible CPU)' : ''));
    }
    if (!Object.hasOwn(FLAGS, flags)) throw new TypeError("Usage: update(key, value, flags?: 'any' | 'noexist' | 'exist')");
    call(`map '${this.name}': update`, (code) => {
      if (code === 'E2BIG') return 'the map is full (maxEntries reached)';
      if (code === 'EEXIST') return "the key exists and flags were 'noexist'";
      if (code === 'ENOENT') return "the key does not exist and flags were 'exist'";
      return undefined;
    }, () => native.mapUpdate(this.#h, this.name, key, value, FLAGS[flags]));
  }

  delete(key) {
    this.#key(key, 'delete');
    return call(`map '${this.name}': delete`, (code) => code === 'EINVAL' ? 'array maps cannot delete elements' : undefined,
      () => native.mapDelete(this.#h, this.name, key));
  }

  keys() {
    return call(`map '${this.name}': keys`, null, () => native.mapKeys(this.#h, this.name));
  }
}

class RingBufferReader {
  #r;

  constructor(handle) {
    if (!handle) throw new TypeError('Usage: use bpfObject.openRingBuffer(map, onBatch) to get a reader');
    this.#r = handle;
  }

  get stats() { return native.ringStats(this.#r); }

  consume() {
    try {
      return native.ringConsume(this.#r);
    } catch (err) {
      // Anything else is onBatch's own exception: rethrow it untouched.
      if (err && err.code === 'ERR_BPF_REENTRANT') throw wrapNative(err, 'consume()');
      throw err;
    }
  }

  ref() { native.ringRef(this.#r, true); return this; }

  unref() { native.ringRef(this.#r, false); return this; }

  close() { native.ringClose(this.#r); }
}

function releaseBatch(batch) {
  if (!Buffer.isBuffer(batch)) throw new TypeError('Usage: releaseBatch(batch: Buffer) takes a batch onBatch was given');
  native.ringRelease(batch);
}

function forEachRecord(batch, fn) {
  if (!Buffer.isBuffer(batch) || typeof fn !== 'function') {
    throw new TypeError('Usage: forEachRecord(batch: Buffer, fn: (offset: number, length: number, batch: Buffer) => void)');
  }
  let pos = 0;
  let count = 0;
  while (pos < batch.length) {
    if (pos + RECORD_HEADER_BYTES > batch.length) throw new RangeError(`forEachRecord: truncated record header at byte ${pos}`);
    const length = batch.readUInt32LE(pos);
    const offset = pos + RECORD_HEADER_BYTES;
    if (offset + length > batch.length) throw new RangeError(`forEachRecord: record at byte ${pos} overruns the batch`);
    fn(offset, length, batch);
    count++;
    pos = offset + ((length + 7) & ~7);
  }
  return count;
}

function* records(batch) {
  const views = [];
  forEachRecord(batch, (offset, length) => views.push(batch.subarray(offset, offset + length)));
  yield* views;
}

/** CLOCK_BOOTTIME now, in ns (BigInt): the clock of bpf_ktime_get_boot_ns(). */
function clockBoottimeNs() {
  return native.clockBoottimeNs();
}

// ---- capabilities (src/caps.c) -------------------------------------------------
// Names in the kernel's numbering (include/uapi/linux/capability.h), index = capability number.
const CAPABILITY_NAMES = Object.freeze(['CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER',
  'CAP_FSETID', 'CAP_KILL', 'CAP_SETGID', 'CAP_SETUID', 'CAP_SETPCAP', 'CAP_LINUX_IMMUTABLE',
  'CAP_NET_BIND_SERVICE', 'CAP_NET_BROADCAST', 'CAP_NET_ADMIN', 'CAP_NET_RAW', 'CAP_IPC_LOCK',
  'CAP_IPC_OWNER', 'CAP_SYS_MODULE', 'CAP_SYS_RAWIO', 'CAP_SYS_CHROOT', 'CAP_SYS_PTRACE', 'CAP_SYS_PACCT',
  'CAP_SYS_ADMIN', 'CAP_SYS_BOOT', 'CAP_SYS_NICE', 'CAP_SYS_RESOURCE', 'CAP_SYS_TIME', 'CAP_SYS_TTY_CONFIG',
  'CAP_MKNOD', 'CAP_LEASE', 'CAP_AUDIT_WRITE', 'CAP_AUDIT_CONTROL', 'CAP_SETFCAP', 'CAP_MAC_OVERRIDE',
  'CAP_MAC_ADMIN', 'CAP_SYSLOG', 'CAP_WAKE_ALARM', 'CAP_BLOCK_SUSPEND', 'CAP_AUDIT_READ', 'CAP_PERFMON',
  'CAP_BPF', 'CAP_CHECKPOINT_RESTORE']);

function capabilityNumber(name) {
  if (typeof name !== 'string') throw new TypeError('Usage: capability names are strings like "CAP_BPF" or "bpf"');
  const upper = name.toUpperCase();
  const i = CAPABILITY_NAMES.indexOf(upper.startsWith('CAP_') ? upper : `CAP_${upper}`);
  if (i < 0) throw new TypeError(`Usage: unknown capability ${JSON.stringify(name)} (known: ${CAPABILITY_NAMES.join(', ')})`);
  return i;
}

function namesOf(hex) {
  const mask = BigInt(`0x${hex}`);
  return CAPABILITY_NAMES.filter((_, i) => (mask >> BigInt(i)) & 1n);
}

/** The capability sets of the calling thread (or of thread/process `pid`), from /proc. */
function capabilities(pid) {
  const file = pid === undefined ? '/proc/thread-self/status' : `/proc/${pid}/status`;
  const text = require('node:fs').readFileSync(file, 'utf8');
  const set = (field) => namesOf(new RegExp(`^${field}:\\s*([0-9a-f]+)$`, 'm').exec(text)?.[1] ?? '0');
  return { effective: set('CapEff'), permitted: set('CapPrm'), inheritable: set('CapInh'), bounding: set('CapBnd'), ambient: set('CapAmb') };
}

/**
 * Drops capabilities from the effective, permitted, inheritable and ambient sets (and the
 * bounding set, when `bounding` is true and CAP_SETPCAP is held) of every thread of the process.
 * Irreversible. Returns how many threads dropped them and the ids of threads that could not
 * be reached (they block all signals); throws BpfError (code EPERM, ...) if capset() fails.
 */
function dropCapabilities(names, options = {}) {
  if (!Array.isArray(names)) throw new TypeError('Usage: dropCapabilities(names: string[], { bounding?: boolean })');
  const bounding = options.bounding ?? true;
  if (typeof bounding !== 'boolean') throw new TypeError('Usage: dropCapabilities(): bounding must be a boolean');
  let lo = 0;
  let hi = 0;
  for (const n of names) {
    const c = capabilityNumber(n);
    if (c < 32) lo = (lo | (1 << c)) >>> 0;
    else hi = (hi | (1 << (c - 32))) >>> 0;
  }
  let r;
  try {
    r = native.dropCapabilities(lo, hi, bounding);
  } catch (err) {
    if (err instanceof TypeError) throw err;
    const code = errnoCode(err.errno);
    throw new BpfError(`dropping capabilities failed: ${err.message} (${code ?? err.errno})`, { cause: err, errno: err.errno, code });
  }
  return {
    dropped: names.map((n) => CAPABILITY_NAMES[capabilityNumber(n)]),
    threads: r.threads,
    unreached: r.unreached,
    bounding: r.bounding,
  };
}

// ---- the service manager (src/notify.c) ---------------------------------------------
/**
 * Sends one sd_notify(3) state — "READY=1", "WATCHDOG=1", "STOPPING=1", "STATUS=..." — to the
 * service manager's socket ($NOTIFY_SOCKET unless given). Returns false when there is no such
 * socket (not started by systemd with Type=notify); throws an Error with errno/code otherwise.
 */
function notifyServiceManager(state, socketPath = process.env.NOTIFY_SOCKET) {
  if (typeof state !== 'string' || state.length === 0) throw new TypeError('Usage: notifyServiceManager(state: string, socketPath?: string)');
  if (!socketPath) return false;
  try {
    native.notifyServiceManager(socketPath, state);
  } catch (err) {
    if (err instanceof TypeError) throw err;
    const code = errnoCode(err.errno);
    const e = new Error(`notifying the service manager at ${socketPath} failed: ${err.message} (${code ?? err.errno})`, { cause: err });
    e.errno = err.errno;
    e.code = code;
    throw e;
  }
  return true;
}

module.exports = {
  clockBoottimeNs,
  notifyServiceManager,
  CAPABILITY_NAMES,
  capabilities,
  dropCapabilities,
  BpfError,
  BpfLoadError,
  BpfObject,
  BpfMap,
  RingBufferReader,
  RECORD_HEADER_BYTES,
  forEachRecord,
  records,
  releaseBatch,
};
