/**
 * The deployment files of deploy/ checked against the program they run. No container engine is
 * needed: the Dockerfile, the compose file and the Kubernetes manifests are parsed, their
 * arguments go through raftkv's own command-line parser, and real nodes are started with those
 * arguments (listen address, port and dir swapped for loopback, a free port and a temporary
 * dir) to show that the probed routes answer and that --advertise, --id and --peers agree.
 */
import assert from "node:assert/strict";
import { parse, parseAllDocuments } from "npm:yaml@2.9.1";
import { FLAGS, parseCommandLine, type ServeOptions } from "../../http/mod.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const MAIN_TS = `${ROOT}main.ts`;
const PORT = 2020;
const DATA_DIR = "/data";
const NODE_START_TIMEOUT_MS = 20_000;
const HTTP_TIMEOUT_MS = 2_000;

type Json = Record<string, unknown>;

// ---------------------------------------------------------------------------------------------
// Reading the files

interface Instruction {
  keyword: string;
  text: string;
}

/** The Dockerfile's instructions: continuation lines joined, comments and blank lines dropped. */
function dockerInstructions(text: string): Instruction[] {
  const instructions: Instruction[] = [];
  let pending = "";
  for (const line of text.split("\n")) {
    if (pending === "" && (line.trim() === "" || line.trim().startsWith("#"))) continue;
    if (line.trimEnd().endsWith("\\")) {
      pending += line.trimEnd().slice(0, -1) + " ";
      continue;
    }
    const whole = (pending + line).trim();
    pending = "";
    const space = whole.search(/\s/);
    instructions.push({
      keyword: whole.slice(0, space).toUpperCase(),
      text: whole.slice(space + 1).trim(),
    });
  }
  return instructions;
}

/** The instructions after the last FROM: what the shipped image is made of. */
function finalStage(instructions: Instruction[]): Instruction[] {
  const lastFrom = instructions.findLastIndex((instruction) => instruction.keyword === "FROM");
  return instructions.slice(lastFrom);
}

function only(instructions: Instruction[], keyword: string): Instruction {
  const found = instructions.filter((instruction) => instruction.keyword === keyword);
  assert.equal(found.length, 1, `Dockerfile: expected one ${keyword} in the final stage`);
  return found[0];
}

/** The exec form (a JSON array) of CMD, ENTRYPOINT, VOLUME or HEALTHCHECK … CMD. */
function execForm(text: string): string[] {
  const json = text.slice(text.indexOf("["));
  const value: unknown = JSON.parse(json);
  assert(Array.isArray(value) && value.every((item) => typeof item === "string"), text);
  return value;
}

async function readDockerfile(): Promise<Instruction[]> {
  return dockerInstructions(await Deno.readTextFile(`${ROOT}deploy/Dockerfile`));
}

async function readCompose(): Promise<Json> {
  const text = await Deno.readTextFile(`${ROOT}deploy/docker-compose.yml`);
  // Compose resolves YAML merge keys (`<<: *raftkv`): so must the parser.
  return record(parse(text, { merge: true }), "docker-compose.yml");
}

/** Every document of every deploy/k8s/*.yaml file. */
async function readK8s(): Promise<Json[]> {
  const documents: Json[] = [];
  for await (const entry of Deno.readDir(`${ROOT}deploy/k8s`)) {
    if (!/\.ya?ml$/.test(entry.name)) continue;
    const text = await Deno.readTextFile(`${ROOT}deploy/k8s/${entry.name}`);
    for (const document of parseAllDocuments(text)) {
      assert.equal(document.errors.length, 0, `${entry.name}: ${document.errors[0]?.message}`);
      documents.push(record(document.toJS(), entry.name));
    }
  }
  return documents;
}

function record(value: unknown, what: string): Json {
  assert(typeof value === "object" && value !== null && !Array.isArray(value), `${what}: object`);
  return value as Json;
}

function list(value: unknown, what: string): unknown[] {
  assert(Array.isArray(value), `${what}: expected a list`);
  return value;
}

function strings(value: unknown, what: string): string[] {
  const items = list(value, what);
  assert(items.every((item) => typeof item === "string"), `${what}: expected strings`);
  return items as string[];
}

/** Follows a path of keys and list indexes, failing with the path when something is missing. */
function at(value: unknown, path: string): unknown {
  let current = value;
  for (const key of path.split(".")) {
    assert(typeof current === "object" && current !== null, `missing "${path}" at "${key}"`);
    current = (current as Record<string, unknown>)[key];
    assert(current !== undefined, `missing "${path}" at "${key}"`);
  }
  return current;
}

function byKind(documents: Json[], kind: string): Json[] {
  return documents.filter((document) => document.kind === kind);
}

function one(documents: Json[], kind: string, name?: string): Json {
  const found = byKind(documents, kind).filter((document) =>
    name === undefined || at(document, "metadata.name") === name
  );
  assert.equal(found.length, 1, `deploy/k8s: expected one ${kind} ${name ?? ""}`);
  return found[0];
}

// ---------------------------------------------------------------------------------------------
// Arguments

/** `--name=value` and `--name value` alike, as [name, value] pairs. */
function flagPairs(args: string[]): [string, string][] {
  const pairs: [string, string][] = [];
  for (let i = 0; i < args.length; i++) {
    assert(args[i].startsWith("--"), `unexpected argument "${args[i]}"`);
    const equals = args[i].indexOf("=");
    if (equals > 0) pairs.push([args[i].slice(2, equals), args[i].slice(equals + 1)]);
    else pairs.push([args[i].slice(2), args[++i]]);
  }
  return pairs;
}

/** The same arguments with some flags' values replaced (how a test runs them on loopback). */
function withFlags(args: string[], replacements: Record<string, string>): string[] {
  return flagPairs(args).map(([name, value]) => `--${name}=${replacements[name] ?? value}`);
}

/** raftkv's own parser on the arguments: they must mean "serve". */
function serveOptions(args: string[], what: string): ServeOptions {
  const commandLine = parseCommandLine(args);
  assert.equal(commandLine.kind, "serve", `${what}: the arguments do not start a node`);
  return commandLine.options;
}

/** Kubernetes' $(VAR) expansion from the container's env. */
function expandK8s(text: string, env: Record<string, string>): string {
  const expanded = text.replace(
    /\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g,
    (whole, name: string) => env[name] ?? whole,
  );
  assert(!expanded.includes("$("), `unexpanded variable in "${text}"`);
  return expanded;
}

/** --peers as ordered [id or undefined, url] pairs. */
function peerItems(peers: string | undefined): [string | undefined, string][] {
  assert(peers !== undefined, "--peers is missing");
  return peers.split(",").map((item) => {
    const equals = item.indexOf("=");
    return equals < 0 || /^https?:\/\//.test(item)
      ? [undefined, item]
      : [item.slice(0, equals), item.slice(equals + 1)];
  });
}

async function helpFlags(): Promise<Set<string>> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN_TS, "--help"],
    stdout: "piped",
    stderr: "null",
  }).output();
  assert.equal(output.code, 0, "raftkv --help failed");
  const text = new TextDecoder().decode(output.stdout);
  return new Set([...text.matchAll(/--([a-z][a-z-]*)/g)].map((match) => match[1]));
}

function composeServices(compose: Json): [string, Json][] {
  return Object.entries(record(compose.services, "services")).map((
    [name, service],
  ) => [name, record(service, name)]);
}

function composeCommand(service: Json, name: string): string[] {
  return strings(service.command, `${name}.command`);
}

interface K8sPod {
  container: Json;
  args: string[];
  env: Json[];
}

function raftkvPod(documents: Json[]): K8sPod {
  const statefulSet = one(documents, "StatefulSet");
  const containers = list(at(statefulSet, "spec.template.spec.containers"), "containers");
  assert.equal(containers.length, 1, "the StatefulSet runs one container");
  const container = record(containers[0], "container");
  const env = list(container.env, "env").map((item) => record(item, "env"));
  return { container, args: strings(container.args, "args"), env };
}

/** The args of pod `podName` as Kubernetes would expand them. */
function podArgs(pod: K8sPod, podName: string, namespace: string): string[] {
  const env: Record<string, string> = {};
  for (const item of pod.env) {
    const field = at(item, "valueFrom.fieldRef.fieldPath");
    if (field === "metadata.name") env[String(item.name)] = podName;
    if (field === "metadata.namespace") env[String(item.name)] = namespace;
  }
  return pod.args.map((arg) => expandK8s(arg, env));
}

// ---------------------------------------------------------------------------------------------
// A real node

interface StartedNode {
  url: string;
  output: () => string;
  /** The exit code once the process has ended (a bad flag ends it at once). */
  exitCode: () => number | undefined;
  stop: () => Promise<void>;
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Starts `deno run main.ts` with a deployment's arguments, on loopback, a free port and a
 * temporary dir; waits for /health. stop() kills it and removes the dir, whatever happened. */
async function startNode(args: string[]): Promise<StartedNode> {
  const dir = await Deno.makeTempDir({ prefix: "raftkv_deploy_" });
  const port = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN_TS, ...withFlags(args, { host: "127.0.0.1", port: `${port}`, dir })],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let output = "";
  let exitCode: number | undefined;
  child.status.then((status) => void (exitCode = status.code));
  const drained = child.stderr.pipeThrough(new TextDecoderStream()).pipeTo(
    new WritableStream({ write: (chunk) => void (output += chunk) }),
  ).catch(() => {});
  const node: StartedNode = {
    url: `http://127.0.0.1:${port}`,
    output: () => output,
    exitCode: () => exitCode,
    stop: async () => {
      try {
        child.kill("SIGKILL");
      } catch {
        // Already exited.
      }
      await child.status;
      await drained;
      await Deno.remove(dir, { recursive: true });
    },
  };
  try {
    await waitForStatus(node, "/health", 200);
  } catch (error) {
    await node.stop();
    throw error;
  }
  return node;
}

async function get(url: string): Promise<{ status: number; body: Json }> {
  const response = await fetch(url, { signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });
  const body = record(await response.json(), url);
  return { status: response.status, body };
}

async function waitForStatus(node: StartedNode, path: string, status: number): Promise<void> {
  const deadline = Date.now() + NODE_START_TIMEOUT_MS;
  let last = "no answer";
  while (Date.now() < deadline && node.exitCode() === undefined) {
    try {
      const answer = await get(`${node.url}${path}`);
      if (answer.status === status) return;
      last = `HTTP ${answer.status}`;
    } catch (error) {
      last = error instanceof Error ? error.message : String(error);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const exited = node.exitCode() === undefined ? "" : `, exited ${node.exitCode()}`;
  throw new Error(
    `${path} never answered ${status} (${last}${exited}); node said:\n${node.output()}`,
  );
}

async function withNode(args: string[], check: (node: StartedNode) => Promise<void>) {
  const node = await startNode(args);
  try {
    await check(node);
  } finally {
    await node.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// The Dockerfile

Deno.test("Dockerfile builds with Deno 2.9.6 through deno task compile", async () => {
  const instructions = await readDockerfile();
  const froms = instructions.filter((instruction) => instruction.keyword === "FROM");
  assert.match(froms[0].text, /^denoland\/deno:2\.9\.6 AS build$/);
  const runs = instructions.filter((instruction) => instruction.keyword === "RUN");
  assert(runs.some((run) => run.text.includes("deno task compile --target host")));
  const denoJson = record(JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`)), "deno.json");
  assert.match(String(at(denoJson, "tasks.compile")), /scripts\/compile\.ts/);
  for (const copy of instructions.filter((instruction) => instruction.keyword === "COPY")) {
    if (copy.text.includes("--from=")) continue;
    const sources = copy.text.split(/\s+/).filter((word) => !word.startsWith("--")).slice(0, -1);
    for (const source of sources) await Deno.stat(`${ROOT}${source}`); // In the repository.
  }
  const final = froms.at(-1)?.text ?? "";
  assert(!final.startsWith("denoland/deno"), "the final stage ships the binary, not Deno");
});

Deno.test("Dockerfile runs the binary as a non-root user with /data as a volume", async () => {
  const stage = finalStage(await readDockerfile());
  const user = only(stage, "USER").text.split(":")[0];
  assert(!["root", "0", ""].includes(user), `USER is "${user}"`);
  assert.deepEqual(execForm(only(stage, "VOLUME").text), [DATA_DIR]);
  const entrypoint = execForm(only(stage, "ENTRYPOINT").text);
  assert.equal(entrypoint.length, 1);
  const copies = stage.filter((instruction) => instruction.keyword === "COPY");
  assert(copies.some((copy) => copy.text.endsWith(` ${entrypoint[0]}`)), "ENTRYPOINT is copied");
  const options = serveOptions(execForm(only(stage, "CMD").text), "Dockerfile CMD");
  assert.equal(options.host, "0.0.0.0");
  assert.equal(options.port, PORT);
  assert.equal(options.dir, DATA_DIR);
  assert.equal(only(stage, "EXPOSE").text, `${PORT}`);
  const healthUrl = execForm(only(stage, "HEALTHCHECK").text).find((arg) => arg.includes("://"));
  assert.equal(new URL(String(healthUrl)).pathname, "/health", "liveness: quorum not needed");
  const chown = copies.find((copy) => copy.text.endsWith(` ${DATA_DIR}`));
  assert(chown?.text.includes(`--chown=${only(stage, "USER").text}`), "/data belongs to USER");
  // Arguments that leave out --dir still keep the data on the volume.
  const workdir = only(stage, "WORKDIR").text.replace(/\/?$/, "/");
  const defaultDir = String(FLAGS.find((flag) => flag.name === "dir")?.default);
  assert.equal(new URL(defaultDir, `file://${workdir}`).pathname, DATA_DIR);
});

// ---------------------------------------------------------------------------------------------
// Flags and ports everywhere

Deno.test("every flag the deployment files pass is in raftkv --help", async () => {
  const known = await helpFlags();
  const stage = finalStage(await readDockerfile());
  const argLists: [string, string[]][] = [["Dockerfile CMD", execForm(only(stage, "CMD").text)]];
  for (const [name, service] of composeServices(await readCompose())) {
    argLists.push([`compose ${name}`, composeCommand(service, name)]);
  }
  argLists.push(["StatefulSet args", raftkvPod(await readK8s()).args]);
  for (const [what, args] of argLists) {
    for (const [name] of flagPairs(args)) assert(known.has(name), `${what}: unknown --${name}`);
  }
});

Deno.test("port 2020 agrees in EXPOSE, compose, containerPort, probes and Services", async () => {
  const stage = finalStage(await readDockerfile());
  const healthUrl = execForm(only(stage, "HEALTHCHECK").text).find((arg) => arg.includes("://"));
  assert.equal(new URL(String(healthUrl)).port, `${PORT}`);
  for (const [name, service] of composeServices(await readCompose())) {
    assert.equal(serveOptions(composeCommand(service, name), name).port, PORT);
    const ports = strings(service.ports, `${name}.ports`);
    assert(ports.length === 1 && ports[0].endsWith(`:${PORT}`), `${name}: ${ports}`);
    const test = strings(at(service, "healthcheck.test"), `${name}.healthcheck`);
    assert.equal(new URL(String(test.find((arg) => arg.includes("://")))).port, `${PORT}`);
  }
  const documents = await readK8s();
  const pod = raftkvPod(documents);
  const containerPorts = list(pod.container.ports, "ports").map((port) => record(port, "port"));
  assert.deepEqual(containerPorts.map((port) => [port.name, port.containerPort]), [["http", PORT]]);
  assert.equal(serveOptions(podArgs(pod, "raftkv-0", "default"), "StatefulSet").port, PORT);
  for (const probe of ["startupProbe", "livenessProbe", "readinessProbe"]) {
    assert.equal(at(pod.container, `${probe}.httpGet.port`), "http", probe);
  }
  for (const service of byKind(documents, "Service")) {
    const ports = list(at(service, "spec.ports"), "Service ports").map((p) => record(p, "port"));
    assert.deepEqual(ports.map((port) => [port.port, port.targetPort]), [[PORT, "http"]]);
  }
});

Deno.test("the volume path is the --dir in the image, compose and the StatefulSet", async () => {
  const compose = await readCompose();
  const declared = Object.keys(record(compose.volumes, "volumes"));
  for (const [name, service] of composeServices(compose)) {
    assert.equal(serveOptions(composeCommand(service, name), name).dir, DATA_DIR);
    const volumes = strings(service.volumes, `${name}.volumes`);
    assert.equal(volumes.length, 1);
    const [volume, target] = volumes[0].split(":");
    assert.equal(target, DATA_DIR);
    assert(declared.includes(volume), `${name}: volume "${volume}" is not declared`);
  }
  assert.equal(new Set(declared).size, 3, "one named volume per node");
  const documents = await readK8s();
  const pod = raftkvPod(documents);
  assert.equal(serveOptions(podArgs(pod, "raftkv-0", "default"), "StatefulSet").dir, DATA_DIR);
  const mounts = list(pod.container.volumeMounts, "volumeMounts").map((m) => record(m, "mount"));
  const dataMount = mounts.find((mount) => mount.mountPath === DATA_DIR);
  assert(dataMount !== undefined, "nothing is mounted at /data");
  const claims = list(at(one(documents, "StatefulSet"), "spec.volumeClaimTemplates"), "claims");
  const claimNames = claims.map((claim) => at(claim, "metadata.name"));
  assert(claimNames.includes(dataMount.name), "/data is a PersistentVolumeClaim per pod");
});

// ---------------------------------------------------------------------------------------------
// Peers

Deno.test("compose: three nodes whose --peers are their --advertise URLs", async () => {
  const compose = await readCompose();
  const services = composeServices(compose);
  assert.deepEqual(services.map(([name]) => name), ["raftkv1", "raftkv2", "raftkv3"]);
  const advertised = services.map(([name, service]) =>
    serveOptions(composeCommand(service, name), name).advertise
  );
  assert.deepEqual(advertised, services.map(([name]) => `http://${name}:${PORT}`));
  for (const [name, service] of services) {
    const options = serveOptions(composeCommand(service, name), name);
    assert.equal(options.host, "0.0.0.0", `${name} listens on every interface`);
    const peers = peerItems(options.peers);
    assert.deepEqual(peers.map(([, url]) => url), advertised, `${name}: --peers`);
    const test = strings(at(service, "healthcheck.test"), `${name}.healthcheck`);
    assert.equal(test[0], "CMD", `${name}: the image has no shell for CMD-SHELL`);
    assert.equal(new URL(String(test.at(-1))).pathname, "/ready", `${name}: healthcheck`);
    assert.deepEqual(strings(service.networks, `${name}.networks`), ["raftkv"]);
  }
});

Deno.test("Kubernetes: --id, --advertise and --peers name the StatefulSet's pods", async () => {
  const documents = await readK8s();
  const statefulSet = one(documents, "StatefulSet");
  const name = String(at(statefulSet, "metadata.name"));
  const replicas = Number(at(statefulSet, "spec.replicas"));
  assert.equal(replicas, 3);
  assert.equal(at(statefulSet, "spec.podManagementPolicy"), "Parallel");
  const peerService = one(documents, "Service", String(at(statefulSet, "spec.serviceName")));
  assert.equal(at(peerService, "spec.clusterIP"), "None");
  assert.equal(at(peerService, "spec.publishNotReadyAddresses"), true);
  const namespace = "raftkv-test";
  const pods = Array.from({ length: replicas }, (_, i) => `${name}-${i}`);
  const urlOf = (pod: string) =>
    `http://${pod}.${at(peerService, "metadata.name")}.${namespace}.svc.cluster.local:${PORT}`;
  const pod = raftkvPod(documents);
  for (const podName of pods) {
    const options = serveOptions(podArgs(pod, podName, namespace), podName);
    assert.equal(options.id, podName);
    assert.equal(options.advertise, urlOf(podName));
    const peers = peerItems(options.peers);
    assert.deepEqual(peers, pods.map((peer) => [peer, urlOf(peer)]), `${podName}: --peers`);
  }
});

Deno.test("Kubernetes: probes, selectors, disruption budget and security", async () => {
  const documents = await readK8s();
  const statefulSet = one(documents, "StatefulSet");
  const pod = raftkvPod(documents);
  assert.equal(at(pod.container, "readinessProbe.httpGet.path"), "/ready");
  assert.equal(at(pod.container, "livenessProbe.httpGet.path"), "/health");
  assert.equal(at(pod.container, "startupProbe.httpGet.path"), "/health");
  const labels = record(at(statefulSet, "spec.template.metadata.labels"), "pod labels");
  const selects = (selector: Json) =>
    Object.entries(selector).every(([key, value]) => labels[key] === value);
  assert(selects(record(at(statefulSet, "spec.selector.matchLabels"), "selector")));
  for (const service of byKind(documents, "Service")) {
    assert(selects(record(at(service, "spec.selector"), "Service selector")));
  }
  const budget = one(documents, "PodDisruptionBudget");
  assert.equal(at(budget, "spec.maxUnavailable"), 1, "a quorum of 3 survives one disruption");
  assert(selects(record(at(budget, "spec.selector.matchLabels"), "budget selector")));
  const spec = record(at(statefulSet, "spec.template.spec"), "pod spec");
  assert.equal(at(spec, "securityContext.runAsNonRoot"), true);
  assert.notEqual(at(spec, "securityContext.runAsUser"), 0);
  assert.equal(at(spec, "securityContext.fsGroup"), at(spec, "securityContext.runAsUser"));
  assert(Number(spec.terminationGracePeriodSeconds) > 0);
  const requests = record(at(pod.container, "resources.requests"), "resources.requests");
  assert(requests.cpu !== undefined && requests.memory !== undefined, "CPU and memory requests");
  const clientServices = byKind(documents, "Service").filter((service) =>
    record(at(service, "spec"), "spec").clusterIP !== "None"
  );
  assert.equal(clientServices.length, 1, "one client Service beside the headless one");
});

// ---------------------------------------------------------------------------------------------
// Real nodes with the deployments' arguments

Deno.test("a node started with the image's CMD serves /health and becomes /ready", async () => {
  const cmd = execForm(only(finalStage(await readDockerfile()), "CMD").text);
  await withNode(cmd, async (node) => {
    await waitForStatus(node, "/ready", 200);
    assert.equal((await get(`${node.url}/health`)).status, 200);
  });
});

Deno.test("a compose node counts the three services as members and is alive, not ready", async () => {
  const [[name, service]] = composeServices(await readCompose());
  await withNode(composeCommand(service, name), async (node) => {
    const status = (await get(`${node.url}/status`)).body;
    const members = list(status.members, "members").map((member) => record(member, "member"));
    assert.deepEqual(
      members.map((member) => member.url).sort(),
      ["raftkv1", "raftkv2", "raftkv3"].map((host) => `http://${host}:${PORT}`),
    );
    const self = members.find((member) => member.id === status.id);
    assert.equal(self?.url, `http://${name}:${PORT}`, "the node is one of the three");
    // Its peers cannot be reached from here: no quorum, so the probe keeps it out of service.
    const ready = await get(`${node.url}/ready`);
    assert.equal(ready.status, 503);
    assert.equal(ready.body.error, "not ready");
  });
});

Deno.test("a Kubernetes pod's arguments give it its pod name as id among three", async () => {
  const pod = raftkvPod(await readK8s());
  await withNode(podArgs(pod, "raftkv-1", "raftkv-test"), async (node) => {
    const status = (await get(`${node.url}/status`)).body;
    assert.equal(status.id, "raftkv-1");
    const members = list(status.members, "members").map((member) => record(member, "member"));
    assert.deepEqual(members.map((member) => member.id).sort(), [
      "raftkv-0",
      "raftkv-1",
      "raftkv-2",
    ]);
  });
});

// ---------------------------------------------------------------------------------------------
// The health check command itself

const BUSYBOX = ["/usr/bin/busybox", "/bin/busybox"].find((path) => {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
});

async function healthCheckExitCode(test: string[], url: string): Promise<number> {
  const [program, ...args] = test.slice(1);
  assert.match(program, /\/busybox$/, "the health check uses the image's busybox");
  const target = new URL(String(args.at(-1)));
  const output = await new Deno.Command(String(BUSYBOX), {
    args: [...args.slice(0, -1), `${url}${target.pathname}`],
    stdout: "null",
    stderr: "null",
    signal: AbortSignal.timeout(10_000),
  }).output();
  return output.code;
}

Deno.test({
  name: "the compose health check command passes on 200 and fails on 503",
  ignore: BUSYBOX === undefined,
  fn: async () => {
    const [[name, service]] = composeServices(await readCompose());
    const test = strings(at(service, "healthcheck.test"), "healthcheck.test");
    await withNode(composeCommand(service, name), async (node) => {
      assert.notEqual(await healthCheckExitCode(test, node.url), 0, "no quorum: not healthy");
    });
    const cmd = execForm(only(finalStage(await readDockerfile()), "CMD").text);
    await withNode(cmd, async (node) => {
      await waitForStatus(node, "/ready", 200);
      assert.equal(await healthCheckExitCode(test, node.url), 0, "a one-node cluster is ready");
    });
  },
});
