import type { Logger, RaftNodeApi } from "../raft/mod.ts";
import { UsageError } from "./peers.ts";

const JOIN_TIMEOUT_MS = 5_000;
const JOIN_ATTEMPTS_MAX = 60;
const JOIN_RETRY_MS = 1_000;

/** Asks a running member for the cluster id a joining node must store. */
export async function lookUpClusterId(joinUrl: string): Promise<string> {
  let response: Response;
  try {
    response = await fetch(`${joinUrl.replace(/\/+$/, "")}/status`, {
      signal: AbortSignal.timeout(JOIN_TIMEOUT_MS),
    });
  } catch (error) {
    throw new UsageError(`Cannot join through "${joinUrl}": ${(error as Error).message}`);
  }
  const body: unknown = await response.json().catch(() => undefined);
  const clusterId = (body as { clusterId?: unknown } | undefined)?.clusterId;
  if (!response.ok || typeof clusterId !== "string" || clusterId === "") {
    throw new UsageError(`Cannot join through "${joinUrl}": its /status names no cluster id`);
  }
  return clusterId;
}

/**
 * Asks the cluster to add this node (as a learner; the leader promotes it once caught up),
 * retrying until it is a member. Runs in the background of a node started with --join.
 */
export async function joinCluster(
  context: { joinUrl: string; selfUrl: string; node: RaftNodeApi; logger: Logger },
): Promise<void> {
  const { node, logger } = context;
  for (let attempt = 1; attempt <= JOIN_ATTEMPTS_MAX; attempt++) {
    if (node.status().members.some((member) => member.id === node.id)) return;
    try {
      const response = await fetch(`${context.joinUrl.replace(/\/+$/, "")}/cluster/members`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ url: context.selfUrl }),
        signal: AbortSignal.timeout(JOIN_TIMEOUT_MS),
      });
      const text = await response.text();
      if (response.ok) {
        logger.info("joined the cluster as a learner", { id: node.id, via: context.joinUrl });
        return;
      }
      if (response.status === 409 && text.includes("already a member")) return;
      logger.warn("join refused; retrying", {
        status: response.status,
        answer: text.slice(0, 200),
      });
    } catch (error) {
      logger.warn("join failed; retrying", { error: (error as Error).message });
    }
    await new Promise((resolve) => setTimeout(resolve, JOIN_RETRY_MS));
  }
  logger.error("could not join the cluster", { via: context.joinUrl });
}
