/**
 * The track stage, the agent core: decoded events → dwell records, the live socket table, stuck
 * sockets, dwell histograms and detector alerts. Pure TypeScript, clock injected, no I/O.
 *
 *   const tracker = new Tracker({ clock: clockBoottimeNs, onDwell: (r) => publish(r) });
 *   tracker.seed(ns.inode, snapshotEvents);   // per namespace, at start and now and then
 *   tracker.ingest(batchOfEvents);            // per ring batch
 *   tracker.table(); tracker.stuck(); tracker.takeHistograms().encode(); tracker.evaluate();
 */
export { Tracker, TIMEWAIT_LEN_NS, TIMEWAIT_GRACE_NS, REQUEST_SOCK_TIMEOUT_NS, type DwellRow, type DwellRowSink, type TrackerOptions, type StuckOptions } from './tracker.js';
export type { LiveTable } from './live-table.js';
export { HistogramSet, HISTOGRAM_UNIT, SIGNIFICANT_DIGITS, type EncodedHistogram, type HistogramKey, type HistogramDimension } from './histograms.js';
export {
  DEFAULT_THRESHOLDS,
  DETECTORS,
  DETECTOR_STATE,
  EXPLAIN,
  THRESHOLDS,
  isConnectFailure,
  parseThresholdValue,
  resolveThresholds,
  type Alert,
  type DetectorName,
  type DetectorThresholds,
  type StateName,
} from './detectors/index.js';
export type { SysctlReaders } from '../kernel/sysctl.js';
export { ssStateName, toSsCounts } from './states.js';
export type {
  DwellPrecision,
  DwellRecord,
  ListenerPoll,
  LiveTableSnapshot,
  SocketIdentity,
  StateCounts,
  StuckSocket,
  TrackerStats,
} from './types.js';
