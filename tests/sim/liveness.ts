import type { Index } from "../../raft/mod.ts";
import { entryKey, SafetyViolation } from "./invariants.ts";
import type { Simulation } from "./simulation.ts";

/** Liveness bounds after the faults stop, in election timeouts (a step is about a tick). */
export const LEADER_TIMEOUTS_MAX = 40;
export const COMMIT_TIMEOUTS_MAX = 80;

function fail(sim: Simulation, what: string): never {
  throw new SafetyViolation(
    `Liveness violated (seed ${sim.options.seed}, step ${sim.step}): ${what}`,
  );
}

interface Pending {
  leader: string;
  index: Index;
  key: string;
}

/**
 * Proposals still waiting on their proposer that a leader's log holds, leader by leader: those
 * of a leader that keeps its term until the end must commit. (A leader cut off in a minority
 * when the faults stopped is deposed, and its uncommitted entries may go.)
 */
function pendingInLeaderLogs(sim: Simulation): Pending[] {
  const pending: Pending[] = [];
  for (const leaderNode of sim.nodes()) {
    if (!leaderNode.isLeader()) continue;
    const leader = leaderNode.core!;
    const mark = `${leaderNode.id}@${leader.term}`;
    for (const node of sim.nodes()) {
      for (const [index, key] of node.proposals) {
        const entry = index > leader.snapshotIndex() ? leader.entry(index) : undefined;
        if (entry !== undefined && entryKey(entry) === key) {
          pending.push({ leader: mark, index, key });
        }
      }
    }
  }
  return pending;
}

/**
 * Once the faults stop (network healed, every crashed node restarted), a leader must appear
 * within a bounded number of steps; a fresh proposal must then be applied on every live member
 * (so everything in the leader's log before it is too), and a linearizable read answered.
 */
export function checkLiveness(sim: Simulation): void {
  sim.stopFaults();
  const start = sim.step;
  const timeoutTicks = sim.options.electionTimeoutTicks;
  const leaderBound = LEADER_TIMEOUTS_MAX * timeoutTicks;
  const commitBound = COMMIT_TIMEOUTS_MAX * timeoutTicks;
  while (sim.someLeader() === undefined) {
    if (sim.step - start > leaderBound) {
      fail(sim, `no leader ${leaderBound} steps after the faults stopped`);
    }
    sim.calmStep();
  }
  sim.stats.leaderAfterSteps = sim.step - start;
  const pending = pendingInLeaderLogs(sim);
  let target: { index: Index; key: string } | undefined;
  for (;;) {
    if (sim.step - start > commitBound) {
      const lagging = sim.lagging(target?.index ?? 0).join(", ");
      fail(
        sim,
        `proposal ${target?.index ?? "(none accepted)"} not applied on every live member ` +
          `${commitBound} steps after the faults stopped (lagging: ${lagging})`,
      );
    }
    if (target === undefined) {
      const leader = sim.someLeader();
      target = leader === undefined ? undefined : sim.proposeOn(leader);
    }
    sim.calmStep();
    if (target === undefined) continue;
    const applied = sim.checker.appliedKey(target.index);
    if (applied !== undefined && applied !== target.key) {
      sim.trace(`liveness proposal at ${target.index} was lost; proposing again`);
      target = undefined;
    } else if (applied !== undefined && sim.lagging(target.index).length === 0) {
      break;
    }
  }
  sim.stats.commitAfterSteps = sim.step - start;
  const leaders = new Set(
    sim.nodes().filter((node) => node.isLeader()).map((node) => `${node.id}@${node.core!.term}`),
  );
  for (const proposal of pending) {
    if (!leaders.has(proposal.leader)) continue;
    sim.stats.pendingAtHeal += 1;
    const applied = sim.checker.appliedKey(proposal.index);
    if (applied !== proposal.key) {
      fail(
        sim,
        `pending proposal ${proposal.key} at ${proposal.index}, in the leader's log, was lost`,
      );
    }
  }
  let asked = false;
  while (!asked || sim.readOutcome() !== "served") {
    if (sim.step - start > commitBound) {
      fail(sim, `no linearizable read answered ${commitBound} steps after the faults stopped`);
    }
    if (!asked || sim.readOutcome() === "lost") {
      const leader = sim.someLeader();
      asked = leader !== undefined && sim.readOn(leader);
    }
    sim.calmStep();
  }
}
