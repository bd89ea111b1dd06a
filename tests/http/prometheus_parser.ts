/**
 * A strict parser of the Prometheus text exposition format 0.0.4, for tests: every line must
 * be a HELP, a TYPE or a sample that belongs to the family declared before it, and histograms
 * must be internally consistent. It throws on the first line that is not.
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface MetricFamily {
  name: string;
  type: string;
  help: string;
  samples: Sample[];
}

const NAME = "[a-zA-Z_:][a-zA-Z0-9_:]*";
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const HELP_LINE = new RegExp(`^# HELP (${NAME}) (.*)$`);
const TYPE_LINE = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`);
const SAMPLE_LINE = new RegExp(`^(${NAME})(\\{.*\\})? (\\S+)( -?[0-9]+)?$`);
const FLOAT = /^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$/;

export function parseValue(text: string): number {
  if (text === "NaN") return NaN;
  if (text === "+Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  if (!FLOAT.test(text)) throw new SyntaxError(`Invalid sample value "${text}"`);
  return Number(text);
}

/** Parses `{a="1",b="x\"y"}` with the format's escapes (\\, \", \n) and nothing else. */
export function parseLabels(text: string): Record<string, string> {
  const labels: Record<string, string> = {};
  let i = 1;
  while (i < text.length - 1) {
    const eq = text.indexOf("=", i);
    if (eq === -1) throw new SyntaxError(`Invalid labels ${text}`);
    const name = text.slice(i, eq);
    if (!LABEL_NAME.test(name)) throw new SyntaxError(`Invalid label name "${name}"`);
    if (name in labels) throw new SyntaxError(`Duplicate label "${name}"`);
    if (text[eq + 1] !== '"') throw new SyntaxError(`Unquoted value of label "${name}"`);
    let value = "";
    let j = eq + 2;
    for (; j < text.length && text[j] !== '"'; j++) {
      if (text[j] === "\n") throw new SyntaxError("Newline in a label value");
      if (text[j] !== "\\") {
        value += text[j];
        continue;
      }
      const escaped = text[++j];
      if (escaped === "\\" || escaped === '"') value += escaped;
      else if (escaped === "n") value += "\n";
      else throw new SyntaxError(`Invalid escape "\\${escaped}" in label "${name}"`);
    }
    if (text[j] !== '"') throw new SyntaxError(`Unterminated label value in ${text}`);
    labels[name] = value;
    i = j + 1;
    if (text[i] === ",") i++;
    else if (i !== text.length - 1) throw new SyntaxError(`Expected "," in labels ${text}`);
  }
  return labels;
}

function familyOf(sampleName: string, family: MetricFamily | undefined): boolean {
  if (family === undefined) return false;
  if (family.type !== "histogram" && family.type !== "summary") return sampleName === family.name;
  return [`${family.name}_bucket`, `${family.name}_sum`, `${family.name}_count`, family.name]
    .includes(sampleName);
}

function seriesKey(labels: Record<string, string>, without: string | undefined): string {
  return JSON.stringify(
    Object.keys(labels).filter((name) => name !== without).sort()
      .map((name) => [name, labels[name]]),
  );
}

function checkHistogram(family: MetricFamily): void {
  const series = new Map<string, { buckets: [number, number][]; sum?: number; count?: number }>();
  for (const sample of family.samples) {
    const key = seriesKey(sample.labels, "le");
    const entry = series.get(key) ?? { buckets: [] };
    series.set(key, entry);
    if (sample.name.endsWith("_bucket")) {
      if (!("le" in sample.labels)) throw new SyntaxError(`${sample.name} without "le"`);
      entry.buckets.push([parseValue(sample.labels.le), sample.value]);
    } else if (sample.name.endsWith("_sum")) entry.sum = sample.value;
    else if (sample.name.endsWith("_count")) entry.count = sample.value;
  }
  for (const [key, entry] of series) {
    const where = `${family.name}${key}`;
    if (entry.sum === undefined || entry.count === undefined) {
      throw new SyntaxError(`${where}: missing _sum or _count`);
    }
    for (let i = 1; i < entry.buckets.length; i++) {
      const [bound, count] = entry.buckets[i];
      const [previousBound, previousCount] = entry.buckets[i - 1];
      if (!(bound > previousBound)) throw new SyntaxError(`${where}: "le" not increasing`);
      if (count < previousCount) throw new SyntaxError(`${where}: buckets not cumulative`);
    }
    const last = entry.buckets.at(-1);
    if (last === undefined || last[0] !== Infinity) throw new SyntaxError(`${where}: no +Inf`);
    if (last[1] !== entry.count) throw new SyntaxError(`${where}: +Inf bucket is not _count`);
  }
}

/** Parses the whole exposition; throws SyntaxError naming the first bad line. */
export function parsePrometheusText(text: string): Map<string, MetricFamily> {
  if (!text.endsWith("\n")) throw new SyntaxError("The exposition must end with a newline");
  const families = new Map<string, MetricFamily>();
  const seen = new Set<string>();
  let current: MetricFamily | undefined;
  const lines = text.slice(0, -1).split("\n");
  lines.forEach((line, n) => {
    const fail = (why: string) => new SyntaxError(`Line ${n + 1} "${line}": ${why}`);
    const help = HELP_LINE.exec(line);
    const type = TYPE_LINE.exec(line);
    if (help !== null || type !== null) {
      const name = (help ?? type)![1];
      let family = families.get(name);
      if (family === undefined) {
        family = { name, type: "untyped", help: "", samples: [] };
        families.set(name, family);
      } else if (family !== current || family.samples.length > 0) {
        throw fail("metadata after the family's samples or a second time");
      }
      if (help !== null) family.help = help[2];
      if (type !== null) family.type = type[2];
      current = family;
      return;
    }
    if (line.startsWith("#")) return;
    const match = SAMPLE_LINE.exec(line);
    if (match === null) throw fail("not a sample");
    const [, name, labelText, valueText] = match;
    if (!familyOf(name, current)) throw fail("sample outside its family's block");
    let labels: Record<string, string>;
    let value: number;
    try {
      labels = labelText === undefined ? {} : parseLabels(labelText);
      value = parseValue(valueText);
    } catch (error) {
      throw fail((error as Error).message);
    }
    const key = `${name}${seriesKey(labels, undefined)}`;
    if (seen.has(key)) throw fail("duplicate series");
    seen.add(key);
    current!.samples.push({ name, labels, value });
  });
  for (const family of families.values()) {
    if (family.type === "histogram") checkHistogram(family);
    if (family.type === "counter" && family.samples.some((s) => !(s.value >= 0))) {
      throw new SyntaxError(`Counter ${family.name} has a negative value`);
    }
  }
  return families;
}

/** The value of the one sample of `name` whose labels include `labels`. */
export function sampleValue(
  families: Map<string, MetricFamily>,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  for (const family of families.values()) {
    for (const sample of family.samples) {
      if (sample.name !== name) continue;
      if (Object.entries(labels).every(([k, v]) => sample.labels[k] === v)) return sample.value;
    }
  }
  return undefined;
}
