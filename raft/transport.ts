import type { Message, NodeId } from "./types.ts";

/**
 * Sends messages to peers. Fire and forget: Raft tolerates loss, so a send never blocks the
 * loop; a transport drops what it cannot deliver and tells the node through `onUnreachable`.
 */
export interface Transport {
  send(messages: Message[]): void;
  /** Tells the transport where each member is reachable; called when membership changes. */
  setPeers(peers: ReadonlyMap<NodeId, string>): void;
  close(): Promise<void>;
}
