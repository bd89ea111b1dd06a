import type { Member } from "../raft/mod.ts";

/** A flag or a combination of flags that cannot work. main.ts exits 2 on it. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** The id of a node that has no --id: its advertised URL's host and port. */
export function nodeIdFromUrl(url: string): string {
  const parsed = parseHttpUrl(url, "--advertise");
  return parsed.host;
}

export function parseHttpUrl(url: string, what: string): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError(`Invalid ${what}: "${url}" is not a URL`);
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw new UsageError(`Invalid ${what}: "${url}" is not an http or https URL`);
  }
  return parsed;
}

/**
 * Parses --peers ("URL,URL" or "ID=URL,ID=URL") into the initial voters. This node is added
 * when the list leaves it out; listed under its own URL it takes this node's id.
 */
export function parsePeers(text: string, self: { selfId: string; selfUrl: string }): Member[] {
  const members = new Map<string, Member>();
  for (const { id: listedId, url } of peerItems(text)) {
    let id = listedId ?? nodeIdFromUrl(url);
    if (url === self.selfUrl) {
      if (listedId !== undefined && listedId !== self.selfId) {
        throw new UsageError(
          `Invalid --peers: this node's URL ${url} is listed as "${listedId}" but --id is "${self.selfId}"`,
        );
      }
      id = self.selfId;
    }
    if (members.has(id)) throw new UsageError(`Invalid --peers: id "${id}" is listed twice`);
    members.set(id, { id, url, voter: true });
  }
  if (!members.has(self.selfId)) {
    members.set(self.selfId, { id: self.selfId, url: self.selfUrl, voter: true });
  }
  return [...members.values()].sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

/**
 * This node's id: --id when given, else the id an `ID=URL` --peers list gives this node's own
 * URL (so one list serves every node, as etcd's --initial-cluster does), else host:port.
 */
export function selfIdOf(explicitId: string | undefined, peers: string, selfUrl: string): string {
  if (explicitId !== undefined) return explicitId;
  const listed = peerItems(peers).find((item) => item.url === selfUrl && item.id !== undefined);
  return listed?.id ?? nodeIdFromUrl(selfUrl);
}

function peerItems(text: string): { id?: string; url: string }[] {
  return text.split(",").map((part) => part.trim()).filter((part) => part !== "").map((item) => {
    const equals = item.indexOf("=");
    const hasId = equals > 0 && !item.slice(0, equals).includes("/");
    const url = (hasId ? item.slice(equals + 1) : item).replace(/\/+$/, "");
    parseHttpUrl(url, "--peers");
    return hasId ? { id: item.slice(0, equals), url } : { url };
  });
}

/** A cluster's id: a hash of its initial members' ids, the same on every initial member. */
export function clusterIdOf(members: Member[]): string {
  let hash = 0xcbf29ce4;
  let hash2 = 0x84222325;
  for (const id of members.map((member) => member.id).sort()) {
    for (const char of `${id}\n`) {
      hash = Math.imul(hash ^ char.charCodeAt(0), 16777619) >>> 0;
      hash2 = Math.imul(hash2 ^ char.charCodeAt(0), 2246822519) >>> 0;
    }
  }
  return hash.toString(16).padStart(8, "0") + hash2.toString(16).padStart(8, "0");
}
