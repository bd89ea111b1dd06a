import { decode, encode } from "./_msgpack.ts";
import { StorageError } from "../raft/mod.ts";
import { errorMessage, isRecord } from "./_validate.ts";
import { DenoKvStorage } from "./deno_kv_storage.ts";
import { type DirLock, lockDir } from "./dir_lock.ts";

/** Who this data dir belongs to. Written once at bootstrap or join, checked at every start. */
export interface NodeIdentity {
  nodeId: string;
  clusterId: string;
}

/** Everything a node keeps in its `--dir`, open and locked for this process. */
export interface NodeStore {
  storage: DenoKvStorage;
  readIdentity(): Promise<NodeIdentity | undefined>;
  writeIdentity(identity: NodeIdentity): Promise<void>;
  /** Bytes on disk of the database (its WAL included). */
  dbSizeBytes(): Promise<number>;
  /** Closes the storage and the database, then releases the dir lock. */
  close(): Promise<void>;
}

/** The data dir belongs to another node or cluster. The process exits with code 2. */
export class IdentityMismatchError extends Error {
  override name = "IdentityMismatchError";
}

export const DB_FILE_NAME = "raftkv.db";
const IDENTITY_KEY: Deno.KvKey = ["meta", "identity"];

/** Throws IdentityMismatchError unless `stored` has the fields given in `expected`. */
export function checkIdentity(stored: NodeIdentity, expected: Partial<NodeIdentity>): void {
  const nodeDiffers = expected.nodeId !== undefined && expected.nodeId !== stored.nodeId;
  const clusterDiffers = expected.clusterId !== undefined &&
    expected.clusterId !== stored.clusterId;
  if (!nodeDiffers && !clusterDiffers) return;
  const wanted = [
    expected.nodeId === undefined ? undefined : `node "${expected.nodeId}"`,
    expected.clusterId === undefined ? undefined : `cluster "${expected.clusterId}"`,
  ].filter((part) => part !== undefined).join(" of ");
  throw new IdentityMismatchError(
    `Cannot use this data dir: it belongs to node "${stored.nodeId}" of cluster ` +
      `"${stored.clusterId}", not to ${wanted}`,
  );
}

/**
 * Opens the node's data dir: creates it if needed, locks it against other processes (throws
 * DirLockedError), and opens the Deno KV database in it.
 */
export async function openNodeStore(dir: string): Promise<NodeStore> {
  try {
    await Deno.mkdir(dir, { recursive: true });
  } catch (error) {
    throw new Error(`Cannot create data dir "${dir}": ${errorMessage(error)}`, { cause: error });
  }
  const lock = await lockDir(dir);
  const dbPath = `${dir}/${DB_FILE_NAME}`;
  let kv: Deno.Kv;
  try {
    kv = await Deno.openKv(dbPath);
  } catch (error) {
    lock.release();
    throw new Error(`Cannot open database "${dbPath}": ${errorMessage(error)}`, { cause: error });
  }
  return new OpenNodeStore(kv, lock, dbPath);
}

class OpenNodeStore implements NodeStore {
  readonly storage: DenoKvStorage;
  readonly #kv: Deno.Kv;
  readonly #lock: DirLock;
  readonly #dbPath: string;
  #closed = false;

  constructor(kv: Deno.Kv, lock: DirLock, dbPath: string) {
    this.storage = new DenoKvStorage(kv);
    this.#kv = kv;
    this.#lock = lock;
    this.#dbPath = dbPath;
  }

  async readIdentity(): Promise<NodeIdentity | undefined> {
    const entry = await this.#kv.get(IDENTITY_KEY);
    if (entry.value === null) return undefined;
    return parseIdentity(entry.value);
  }

  async writeIdentity(identity: NodeIdentity): Promise<void> {
    if (!isIdentity(identity)) {
      throw new TypeError("Cannot write node identity: nodeId and clusterId must be non-empty");
    }
    const value = encode({ nodeId: identity.nodeId, clusterId: identity.clusterId });
    try {
      await this.#kv.set(IDENTITY_KEY, value);
    } catch (error) {
      throw new StorageError(`Cannot write node identity: ${errorMessage(error)}`, {
        cause: error,
      });
    }
  }

  async dbSizeBytes(): Promise<number> {
    let bytes = 0;
    for (const suffix of ["", "-wal", "-shm"]) {
      try {
        bytes += (await Deno.stat(this.#dbPath + suffix)).size;
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      }
    }
    return bytes;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await this.storage.close();
      this.#kv.close();
    } finally {
      this.#lock.release();
    }
  }
}

function isIdentity(value: unknown): value is NodeIdentity {
  return isRecord(value) && typeof value.nodeId === "string" && value.nodeId !== "" &&
    typeof value.clusterId === "string" && value.clusterId !== "";
}

function parseIdentity(value: unknown): NodeIdentity {
  let decoded: unknown;
  try {
    decoded = value instanceof Uint8Array ? decode(value) : undefined;
  } catch {
    decoded = undefined;
  }
  if (!isIdentity(decoded)) {
    throw new StorageError("Corrupt node identity in Deno KV: expected nodeId and clusterId");
  }
  return { nodeId: decoded.nodeId, clusterId: decoded.clusterId };
}
