/**
 * A small metrics registry (counters, gauges, histograms with fixed buckets) and the Prometheus
 * text exposition format, version 0.0.4. Label sets are bounded by their callers: routes are
 * route patterns, never raw paths.
 */

export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Request latency buckets in seconds: from a fast local read to a slow election. */
export const LATENCY_BUCKETS_SECONDS = [
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
];

export type Labels = Record<string, string>;
type MetricType = "counter" | "gauge" | "histogram";

const NAME_PATTERN = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_PATTERN = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function labelKey(labels: Labels): string {
  for (const name of Object.keys(labels)) {
    if (!LABEL_PATTERN.test(name)) throw new TypeError(`Invalid metric label name "${name}"`);
  }
  return Object.keys(labels).sort().map((name) => `${name}="${escapeLabel(labels[name])}"`)
    .join(",");
}

function escapeLabel(value: string): string {
  return value.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
}

function escapeHelp(text: string): string {
  return text.replaceAll("\\", "\\\\").replaceAll("\n", "\\n");
}

function formatNumber(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

function sample(name: string, key: string, value: number): string {
  return `${name}${key === "" ? "" : `{${key}}`} ${formatNumber(value)}`;
}

abstract class Metric {
  abstract readonly type: MetricType;
  constructor(readonly name: string, readonly help: string) {}
  abstract samples(): string[];
}

export class Counter extends Metric {
  readonly type = "counter";
  #values = new Map<string, number>();

  inc(labels: Labels = {}, amount = 1): void {
    if (!(amount >= 0)) throw new RangeError(`Cannot decrease counter "${this.name}"`);
    const key = labelKey(labels);
    this.#values.set(key, (this.#values.get(key) ?? 0) + amount);
  }

  /** An inc() for one label set, resolved once (for callers that count per request). */
  incrementer(labels: Labels): (amount?: number) => void {
    const key = labelKey(labels);
    return (amount = 1) => {
      if (!(amount >= 0)) throw new RangeError(`Cannot decrease counter "${this.name}"`);
      this.#values.set(key, (this.#values.get(key) ?? 0) + amount);
    };
  }

  value(labels: Labels = {}): number {
    return this.#values.get(labelKey(labels)) ?? 0;
  }

  /** Copies a running total kept elsewhere; a counter never goes down, so neither may it. */
  setTotal(labels: Labels, total: number): void {
    const key = labelKey(labels);
    this.#values.set(key, Math.max(this.#values.get(key) ?? 0, total));
  }

  samples(): string[] {
    return [...this.#values].map(([key, value]) => sample(this.name, key, value));
  }
}

export class Gauge extends Metric {
  readonly type = "gauge";
  #values = new Map<string, number>();

  set(labels: Labels, value: number): void {
    this.#values.set(labelKey(labels), value);
  }

  /** Forgets every label set (for gauges rebuilt at each scrape, like per-peer values). */
  reset(): void {
    this.#values.clear();
  }

  samples(): string[] {
    return [...this.#values].map(([key, value]) => sample(this.name, key, value));
  }
}

interface HistogramSeries {
  labels: Labels;
  bucketCounts: number[];
  sum: number;
  count: number;
}

export class Histogram extends Metric {
  readonly type = "histogram";
  readonly buckets: readonly number[];
  #series = new Map<string, HistogramSeries>();

  constructor(name: string, help: string, buckets: readonly number[]) {
    super(name, help);
    for (let i = 1; i < buckets.length; i++) {
      if (!(buckets[i] > buckets[i - 1])) {
        throw new RangeError(`Buckets of histogram "${name}" must increase`);
      }
    }
    this.buckets = buckets;
  }

  observe(labels: Labels, value: number): void {
    this.#record(this.#seriesOf(labels), value);
  }

  /** An observe() for one label set, resolved once (for callers that observe per request). */
  observer(labels: Labels): (value: number) => void {
    const series = this.#seriesOf(labels);
    return (value) => this.#record(series, value);
  }

  #seriesOf(labels: Labels): HistogramSeries {
    if ("le" in labels) throw new TypeError('A histogram label cannot be named "le"');
    const key = labelKey(labels);
    let series = this.#series.get(key);
    if (series === undefined) {
      series = { labels, bucketCounts: this.buckets.map(() => 0), sum: 0, count: 0 };
      this.#series.set(key, series);
    }
    return series;
  }

  #record(series: HistogramSeries, value: number): void {
    for (let i = 0; i < this.buckets.length; i++) {
      if (value <= this.buckets[i]) series.bucketCounts[i]++;
    }
    series.sum += value;
    series.count++;
  }

  count(labels: Labels): number {
    return this.#series.get(labelKey(labels))?.count ?? 0;
  }

  samples(): string[] {
    const lines: string[] = [];
    for (const [key, series] of this.#series) {
      this.buckets.forEach((bound, i) => {
        const bucketKey = labelKey({ ...series.labels, le: formatNumber(bound) });
        lines.push(sample(`${this.name}_bucket`, bucketKey, series.bucketCounts[i]));
      });
      const infKey = labelKey({ ...series.labels, le: "+Inf" });
      lines.push(sample(`${this.name}_bucket`, infKey, series.count));
      lines.push(sample(`${this.name}_sum`, key, series.sum));
      lines.push(sample(`${this.name}_count`, key, series.count));
    }
    return lines;
  }
}

/** The registry. Asking twice for one name returns the same metric (it must be the same type). */
export class Metrics {
  #metrics = new Map<string, Metric>();

  counter(name: string, help: string): Counter {
    return this.#register(name, "counter", () => new Counter(name, help)) as Counter;
  }

  gauge(name: string, help: string): Gauge {
    return this.#register(name, "gauge", () => new Gauge(name, help)) as Gauge;
  }

  histogram(name: string, help: string, buckets: readonly number[]): Histogram {
    return this.#register(name, "histogram", () => new Histogram(name, help, buckets)) as Histogram;
  }

  #register(name: string, type: MetricType, create: () => Metric): Metric {
    if (!NAME_PATTERN.test(name)) throw new TypeError(`Invalid metric name "${name}"`);
    const existing = this.#metrics.get(name);
    if (existing !== undefined) {
      if (existing.type !== type) {
        throw new TypeError(`Metric "${name}" is already registered as a ${existing.type}`);
      }
      return existing;
    }
    const metric = create();
    this.#metrics.set(name, metric);
    return metric;
  }

  /** The Prometheus text exposition of every metric, in registration order. */
  render(): string {
    const lines: string[] = [];
    for (const metric of this.#metrics.values()) {
      lines.push(`# HELP ${metric.name} ${escapeHelp(metric.help)}`);
      lines.push(`# TYPE ${metric.name} ${metric.type}`);
      lines.push(...metric.samples());
    }
    return lines.join("\n") + "\n";
  }
}

/** The metrics raftkv's HTTP layer records and exposes, registered once per registry. */
export function raftkvMetrics(registry: Metrics) {
  return {
    term: registry.gauge("raftkv_term", "Current Raft term of this node"),
    role: registry.gauge("raftkv_role", "1 for the role this node has now, 0 for the others"),
    commitIndex: registry.gauge("raftkv_commit_index", "Highest log index known to be committed"),
    appliedIndex: registry.gauge("raftkv_applied_index", "Highest log index applied locally"),
    lastLogIndex: registry.gauge("raftkv_last_log_index", "Index of the last entry in the log"),
    snapshotIndex: registry.gauge("raftkv_snapshot_index", "Index of the latest snapshot"),
    leaderKnown: registry.gauge("raftkv_leader_known", "1 when this node knows a leader"),
    members: registry.gauge("raftkv_members", "Members of the cluster by kind"),
    keys: registry.gauge("raftkv_keys", "Keys in the local state machine"),
    peerMatchIndex: registry.gauge(
      "raftkv_peer_match_index",
      "Leader only: highest log index known to be replicated on each peer",
    ),
    peerLag: registry.gauge(
      "raftkv_peer_lag_entries",
      "Leader only: entries of the leader's log not yet replicated on each peer",
    ),
    proposals: registry.counter(
      "raftkv_proposals_total",
      "Client writes proposed by this node, by result",
    ),
    forwards: registry.counter(
      "raftkv_forwarded_requests_total",
      "Client requests relayed to the leader, by result",
    ),
    requestDuration: registry.histogram(
      "raftkv_http_request_duration_seconds",
      "HTTP request latency by route pattern and status",
      LATENCY_BUCKETS_SECONDS,
    ),
  };
}

export type RaftkvMetrics = ReturnType<typeof raftkvMetrics>;
