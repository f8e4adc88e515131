/**
 * The decode stage: kernel records (ring batches, iterator output) → typed events, and the
 * names and text forms people read them in. Pure: no I/O.
 */
export type { DecodeStats, EventKind, Family, ResetBy, SocketIdentity, TcpEvent, Vitals } from './event.js';
export { decodeSockFiles, type ListenerQueues, type SockFile } from './sockfiles.js';
export { decodeEvent, decodeRecordList, decodeRecords, decodeRingBatch, frameRecords, resetBy, RING_HEADER_BYTES, TCP_CLOSE, TCP_LISTEN } from './records.js';
export { forEachRingRecord, I as RECORD_INDEX, RecordEvent, RecordView } from './view.js';
export { AF_INET, AF_INET6, endpoint, errnoName, formatAddress, stateName, stateValue } from './names.js';
export { toJson } from './json.js';
export { formatBytes, formatDuration, formatText, formatVitals, TEXT_HEADER } from './text.js';
export { isoTime, wallClock } from './time.js';
