/**
 * A cuttable TCP link for end-to-end partition tests. One proxy carries one directed link
 * (node i → node j): node i lists the proxy's URL as node j's in its --peers, so cutting the
 * proxy silences i → j while j → i keeps working. raftkv peers send every Raft message as
 * its own POST and read nothing from the answer, so a one-way cut is a true one-way partition.
 */

import { freePort, NodeProcess, startOnFreshPorts, waitFor } from "./_harness.ts";

/** How a cut link treats connections opened while it is cut. */
export type CutMode =
  /** Accept, then close at once: the sender sees a reset connection. */
  | "reset"
  /** Accept and hold without forwarding a byte: the sender sees silence until its timeout. */
  | "blackhole";

/** Connections held or forwarded at once by one proxy; more are closed on accept. */
const CONNECTIONS_MAX = 256;
const BUFFER_BYTES = 64 * 1024;

interface Link {
  client: Deno.Conn;
  upstream: Deno.Conn | undefined;
  /** Accepted by a black hole: nothing is forwarded. */
  held: boolean;
  closed: boolean;
}

export class LinkProxy {
  readonly port: number;
  readonly url: string;
  readonly #target: { hostname: string; port: number };
  readonly #listener: Deno.Listener;
  readonly #links = new Set<Link>();
  readonly #tasks = new Set<Promise<void>>();
  #cutMode: CutMode | undefined = undefined;
  #closed = false;
  #acceptLoop: Promise<void>;
  /** Connections forwarded to the target: a test can check that traffic went this way. */
  connectionsForwarded = 0;
  /** Connections closed or held on accept because the link was cut (or full). */
  connectionsRefused = 0;

  /** Listens on a free loopback port and forwards every connection to `target`. */
  constructor(target: { hostname?: string; port: number }) {
    this.#target = { hostname: target.hostname ?? "127.0.0.1", port: target.port };
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.port = (this.#listener.addr as Deno.NetAddr).port;
    this.url = `http://127.0.0.1:${this.port}`;
    this.#acceptLoop = this.#accept();
  }

  get isCut(): boolean {
    return this.#cutMode !== undefined;
  }

  /** Closes every open connection and treats new ones per `mode` until heal(). */
  cut(mode: CutMode = "reset"): void {
    this.#cutMode = mode;
    for (const link of [...this.#links]) this.#closeLink(link);
  }

  /** Forwards new connections again; connections held by a black hole are closed. */
  heal(): void {
    this.#cutMode = undefined;
    for (const link of [...this.#links]) {
      if (link.held) this.#closeLink(link);
    }
  }

  /** Closes the listener and every socket, and waits for the pumps to finish. Safe twice. */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      try {
        this.#listener.close();
      } catch {
        // already closed
      }
    }
    for (const link of [...this.#links]) this.#closeLink(link);
    await this.#acceptLoop;
    // No task starts once the accept loop is over; the bound only guards against surprises.
    for (let round = 0; round < 10 && this.#tasks.size > 0; round++) {
      await Promise.allSettled([...this.#tasks]);
    }
  }

  async #accept(): Promise<void> {
    while (!this.#closed) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch {
        return; // the listener was closed
      }
      if (this.#closed || this.#links.size >= CONNECTIONS_MAX || this.#cutMode === "reset") {
        this.connectionsRefused++;
        closeQuietly(conn);
        continue;
      }
      const held = this.#cutMode === "blackhole";
      const link: Link = { client: conn, upstream: undefined, held, closed: false };
      this.#links.add(link);
      if (held) {
        this.connectionsRefused++;
        continue; // held: nothing is read or forwarded until heal() or close()
      }
      this.connectionsForwarded++;
      this.#track(this.#forward(link));
    }
  }

  #track(task: Promise<void>): void {
    this.#tasks.add(task);
    task.finally(() => this.#tasks.delete(task));
  }

  async #forward(link: Link): Promise<void> {
    try {
      link.upstream = await Deno.connect(this.#target);
    } catch {
      this.#closeLink(link);
      return;
    }
    if (link.closed) {
      // cut() or close() came while connecting.
      closeQuietly(link.upstream);
      return;
    }
    await Promise.all([pump(link.client, link.upstream), pump(link.upstream, link.client)]);
    this.#closeLink(link);
  }

  #closeLink(link: Link): void {
    this.#links.delete(link);
    if (link.closed) return;
    link.closed = true;
    closeQuietly(link.client);
    if (link.upstream !== undefined) closeQuietly(link.upstream);
  }
}

/** Copies bytes until either side ends or fails; the caller closes both sides after. */
async function pump(from: Deno.Conn, to: Deno.Conn): Promise<void> {
  const buffer = new Uint8Array(BUFFER_BYTES);
  try {
    while (true) {
      const read = await from.read(buffer);
      if (read === null) break;
      let written = 0;
      while (written < read) written += await to.write(buffer.subarray(written, read));
    }
  } catch {
    // a side was closed (by cut(), close() or the peer): the link is over
  }
  // Ending one direction ends the link: close both so the other pump stops too.
  closeQuietly(from);
  closeQuietly(to);
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}

/**
 * The full mesh of directed links of a cluster: `link(i, j)` carries node i's traffic to
 * node j. Node ids are 1-based in names only; indexes here are 0-based.
 */
export class ProxyMesh {
  readonly #links: (LinkProxy | undefined)[][];

  constructor(ports: readonly number[]) {
    this.#links = ports.map((_, i) =>
      ports.map((port, j) => i === j ? undefined : new LinkProxy({ port }))
    );
  }

  link(from: number, to: number): LinkProxy {
    const link = this.#links[from]?.[to];
    if (link === undefined) throw new RangeError(`No link from "${from}" to "${to}"`);
    return link;
  }

  /** The --peers value for node `from`: itself directly, every other node through its link. */
  peersFor(from: number, ids: readonly string[], ports: readonly number[]): string {
    return ids.map((id, j) =>
      `${id}=${j === from ? `http://127.0.0.1:${ports[j]}` : this.link(from, j).url}`
    ).join(",");
  }

  /** Cuts both directions between `node` and every other node. */
  isolate(node: number, mode: CutMode = "reset"): void {
    for (let other = 0; other < this.#links.length; other++) {
      if (other === node) continue;
      this.link(node, other).cut(mode);
      this.link(other, node).cut(mode);
    }
  }

  healAll(): void {
    for (const row of this.#links) for (const link of row) link?.heal();
  }

  async close(): Promise<void> {
    await Promise.all(this.#links.flat().map((link) => link?.close()));
  }
}

/**
 * A cluster whose nodes reach each other only through a ProxyMesh, so that any directed link
 * can be cut. Node i has id `n<i+1>`; clients talk to the nodes directly, never via proxies.
 */
export class ProxiedCluster {
  readonly root: string;
  readonly ids: string[];
  readonly mesh: ProxyMesh;
  readonly nodes: NodeProcess[];

  private constructor(root: string, ids: string[], mesh: ProxyMesh, nodes: NodeProcess[]) {
    this.root = root;
    this.ids = ids;
    this.mesh = mesh;
    this.nodes = nodes;
  }

  /** Starts `size` nodes and waits for a leader; cleans up if that fails. */
  static start(
    size: number,
    options: { extraArgs?: string[]; leaderTimeoutMs?: number } = {},
  ): Promise<ProxiedCluster> {
    return startOnFreshPorts(async () => {
      const root = await Deno.makeTempDir({ prefix: "raftkv-e2e-partition-" });
      const ports = Array.from({ length: size }, () => freePort());
      const ids = ports.map((_, i) => `n${i + 1}`);
      const mesh = new ProxyMesh(ports);
      const nodes = ports.map((port, i) =>
        new NodeProcess({
          port,
          dir: `${root}/${ids[i]}`,
          args: [
            "--id",
            ids[i],
            "--peers",
            mesh.peersFor(i, ids, ports),
            ...options.extraArgs ?? [],
          ],
        })
      );
      return new ProxiedCluster(root, ids, mesh, nodes);
    }, (cluster) => cluster.leader({ timeoutMs: options.leaderTimeoutMs ?? 30_000 }));
  }

  /** A running node among `among` (default all) that reports itself leader. */
  leader(
    options: { timeoutMs?: number; among?: NodeProcess[]; termAbove?: number } = {},
  ): Promise<NodeProcess> {
    const among = options.among ?? this.nodes;
    return waitFor("a leader", async () => {
      for (const node of among.filter((n) => n.running)) {
        const status = await node.status().catch(() => undefined);
        if (status?.role !== "leader") continue;
        if (Number(status.term) > (options.termAbove ?? -1)) return node;
      }
      return undefined;
    }, { timeoutMs: options.timeoutMs ?? 30_000, intervalMs: 100 });
  }

  indexOf(node: NodeProcess): number {
    const index = this.nodes.indexOf(node);
    if (index < 0) throw new RangeError(`Node "${node.url}" is not in this cluster`);
    return index;
  }

  /** Waits until every running node has applied the same index as it has committed, and all agree. */
  converged(timeoutMs = 30_000): Promise<Record<string, unknown>[]> {
    return waitFor("the nodes to converge", async () => {
      const statuses = await Promise.all(
        this.nodes.filter((n) => n.running).map((n) => n.status()),
      );
      const first = statuses[0];
      const same = statuses.every((status) =>
        status.appliedIndex === first.appliedIndex && status.commitIndex === first.commitIndex &&
        status.leader === first.leader && status.term === first.term && status.leader !== null
      );
      return same ? statuses : undefined;
    }, { timeoutMs, intervalMs: 200 });
  }

  /** Kills every process, closes every proxy and removes the directory. Safe to call twice. */
  async destroy(): Promise<void> {
    await Promise.all(this.nodes.map((node) => node.kill()));
    await this.mesh.close();
    await Deno.remove(this.root, { recursive: true }).catch(() => {});
  }

  /** The tail of every node's output, for a failing test's message. */
  logs(charsMax = 4000): string {
    return this.nodes.map((node, i) =>
      `--- ${this.ids[i]} (${node.url})\n${node.output.slice(-charsMax)}`
    ).join("\n");
  }
}
