/** Latency statistics for scripts/bench.ts: a log-bucketed histogram in the spirit of
 * HdrHistogram, with a fixed number of buckets (bounded memory whatever the request count)
 * and a relative error under 1 % on every percentile it reports. */

import assert from "node:assert/strict";

/** Each bucket spans a factor of this ratio; reporting the geometric middle of a bucket is
 * off by at most sqrt(1.01) - 1, about 0.5 %. */
const BUCKET_RATIO = 1.01;
const LOG_RATIO = Math.log(BUCKET_RATIO);
/** Values are microseconds; 1 µs to 1,000 s covers every request the generator can time. */
const VALUE_US_MIN = 1;
const VALUE_US_MAX = 1_000_000_000;
const BUCKET_COUNT = Math.ceil(Math.log(VALUE_US_MAX / VALUE_US_MIN) / LOG_RATIO) + 1;

assert(BUCKET_COUNT < 2_200, "the histogram stays small enough to keep one per operation");

export interface LatencySummaryMs {
  count: number;
  minMs: number;
  meanMs: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
}

export class LatencyHistogram {
  #counts = new Float64Array(BUCKET_COUNT);
  #count = 0;
  #sumUs = 0;
  #minUs = Infinity;
  #maxUs = 0;

  get count(): number {
    return this.#count;
  }

  /** Records one latency in microseconds; values outside [1 µs, 1,000 s] land in the end
   * buckets, while min, max and mean stay exact. */
  record(valueUs: number): void {
    assert(Number.isFinite(valueUs) && valueUs >= 0, `latency "${valueUs}" is not a duration`);
    this.#counts[bucketOf(valueUs)] += 1;
    this.#count += 1;
    this.#sumUs += valueUs;
    if (valueUs < this.#minUs) this.#minUs = valueUs;
    if (valueUs > this.#maxUs) this.#maxUs = valueUs;
  }

  /** Adds every sample of `other` to this histogram. */
  merge(other: LatencyHistogram): void {
    if (other.#count === 0) return;
    for (let i = 0; i < BUCKET_COUNT; i++) this.#counts[i] += other.#counts[i];
    this.#count += other.#count;
    this.#sumUs += other.#sumUs;
    this.#minUs = Math.min(this.#minUs, other.#minUs);
    this.#maxUs = Math.max(this.#maxUs, other.#maxUs);
  }

  /** The value at or below which `percentile` % of the samples fall (nearest rank), in µs;
   * 0 when there are no samples. Clamped to the exact min and max. */
  percentileUs(percentile: number): number {
    assert(percentile >= 0 && percentile <= 100, `percentile "${percentile}" is out of range`);
    if (this.#count === 0) return 0;
    const rank = Math.max(1, Math.ceil((percentile / 100) * this.#count));
    let seen = 0;
    for (let i = 0; i < BUCKET_COUNT; i++) {
      seen += this.#counts[i];
      if (seen >= rank) {
        return Math.min(this.#maxUs, Math.max(this.#minUs, bucketMiddleUs(i)));
      }
    }
    return this.#maxUs;
  }

  meanUs(): number {
    return this.#count === 0 ? 0 : this.#sumUs / this.#count;
  }

  summaryMs(): LatencySummaryMs {
    const ms = (us: number) => roundTo(us / 1000, 3);
    return {
      count: this.#count,
      minMs: ms(this.#count === 0 ? 0 : this.#minUs),
      meanMs: ms(this.meanUs()),
      p50Ms: ms(this.percentileUs(50)),
      p90Ms: ms(this.percentileUs(90)),
      p99Ms: ms(this.percentileUs(99)),
      p999Ms: ms(this.percentileUs(99.9)),
      maxMs: ms(this.#maxUs),
    };
  }
}

function bucketOf(valueUs: number): number {
  if (valueUs <= VALUE_US_MIN) return 0;
  const index = Math.floor(Math.log(valueUs / VALUE_US_MIN) / LOG_RATIO);
  return Math.min(index, BUCKET_COUNT - 1);
}

function bucketMiddleUs(index: number): number {
  return VALUE_US_MIN * Math.pow(BUCKET_RATIO, index + 0.5);
}

export function roundTo(value: number, digits: number): number {
  const scale = Math.pow(10, digits);
  return Math.round(value * scale) / scale;
}

/** Error counts by kind: "status 503", "timeout", "network", "protocol". */
export class ErrorCounts {
  #counts = new Map<string, number>();
  #total = 0;

  get total(): number {
    return this.#total;
  }

  add(kind: string, count = 1): void {
    this.#counts.set(kind, (this.#counts.get(kind) ?? 0) + count);
    this.#total += count;
  }

  merge(other: ErrorCounts): void {
    for (const [kind, count] of other.#counts) this.add(kind, count);
  }

  /** Kinds sorted by name, for a stable report. */
  toRecord(): Record<string, number> {
    const record: Record<string, number> = {};
    for (const kind of [...this.#counts.keys()].sort()) record[kind] = this.#counts.get(kind)!;
    return record;
  }
}
