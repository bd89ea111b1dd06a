/** Empty AppendEntries wait briefly, and a later append to the same peer goes in their place. */
import assert from "node:assert/strict";
import { EmptyAppendHold } from "../../raft/append_hold.ts";
import { ManualClock, type Message } from "../../raft/mod.ts";

function append(to: string, entryCount: number, leaderCommit: number): Message {
  const entries = Array.from({ length: entryCount }, (_, i) => ({
    type: "command" as const,
    index: 10 + i,
    term: 2,
    data: new Uint8Array([i]),
  }));
  return {
    type: "appendEntries",
    from: "a",
    to,
    term: 2,
    prevLogIndex: 9,
    prevLogTerm: 2,
    entries,
    leaderCommit,
  };
}

function heartbeat(to: string): Message {
  return { type: "heartbeat", from: "a", to, term: 2, commit: 9, readRound: 0 };
}

function setup(holdMs = 2) {
  const clock = new ManualClock();
  const sent: Message[][] = [];
  const hold = new EmptyAppendHold(clock, holdMs, (messages) => sent.push(messages));
  return { clock, sent, hold };
}

Deno.test("an append without entries leaves after the hold when nothing replaces it", () => {
  const { clock, sent, hold } = setup();
  const notice = append("b", 0, 9);
  hold.send([notice]);
  assert.deepEqual(sent, []);
  clock.advance(1);
  assert.deepEqual(sent, []);
  clock.advance(1);
  assert.deepEqual(sent, [[notice]]);
  assert.equal(hold.replaced, 0);
});

Deno.test("a later append to the same peer replaces a held one, which never leaves", () => {
  const { clock, sent, hold } = setup();
  hold.send([append("b", 0, 9)]);
  const full = append("b", 2, 10);
  hold.send([full]);
  assert.deepEqual(sent, [[full]]);
  clock.advance(10);
  assert.deepEqual(sent, [[full]], "the replaced notice is not sent when the hold ends");
  assert.equal(hold.replaced, 1);
});

Deno.test("a newer empty append replaces the held one and is held itself", () => {
  const { clock, sent, hold } = setup();
  hold.send([append("b", 0, 9)]);
  const newer = append("b", 0, 11);
  hold.send([newer]);
  assert.deepEqual(sent, []);
  clock.advance(2);
  assert.deepEqual(sent, [[newer]]);
  assert.equal(hold.replaced, 1);
});

Deno.test("only appends to the same peer replace; other messages leave at once, in order", () => {
  const { clock, sent, hold } = setup();
  const toB = append("b", 0, 9);
  hold.send([toB]);
  const toC = append("c", 1, 10);
  const beat = heartbeat("b");
  hold.send([beat, toC]);
  assert.deepEqual(sent, [[beat, toC]], "a heartbeat does not replace a held append");
  clock.advance(2);
  assert.deepEqual(sent, [[beat, toC], [toB]]);
  assert.equal(hold.replaced, 0);
});

Deno.test("a hold of 0 ms sends empty appends at once", () => {
  const { sent, hold } = setup(0);
  const notice = append("b", 0, 9);
  hold.send([notice]);
  assert.deepEqual(sent, [[notice]]);
});

Deno.test("close drops what is held and stops the timer", () => {
  const { clock, sent, hold } = setup();
  hold.send([append("b", 0, 9), append("c", 0, 9)]);
  hold.close();
  clock.advance(10);
  assert.deepEqual(sent, []);
});

Deno.test("flush sends every held append now", () => {
  const { clock, sent, hold } = setup();
  const toB = append("b", 0, 9);
  const toC = append("c", 0, 9);
  hold.send([toB, toC]);
  hold.flush();
  assert.deepEqual(sent, [[toB, toC]]);
  clock.advance(10);
  assert.equal(sent.length, 1, "the timer finds nothing left to send");
});
