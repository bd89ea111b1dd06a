import assert from "node:assert/strict";
import { StorageError } from "../../raft/mod.ts";
import {
  DENO_KV_COMMIT_BYTES_MAX,
  DENO_KV_MUTATIONS_MAX,
  DENO_KV_VALUE_BYTES_MAX,
  DenoKvStorage,
} from "../../kv/mod.ts";
import { patternBytes, withTempDir } from "./_helpers.ts";

Deno.test("Deno KV enforces the value and mutation limits kv/limits.ts names", async () => {
  await withTempDir(async (dir) => {
    const kv = await Deno.openKv(`${dir}/limits.db`);
    try {
      await kv.set(["v"], new Uint8Array(DENO_KV_VALUE_BYTES_MAX));
      await assert.rejects(kv.set(["v"], new Uint8Array(DENO_KV_VALUE_BYTES_MAX + 1)));
      const atomic = kv.atomic();
      for (let i = 0; i < DENO_KV_MUTATIONS_MAX; i++) atomic.set(["m", i], 1);
      assert((await atomic.commit()).ok);
      const over = kv.atomic();
      for (let i = 0; i <= DENO_KV_MUTATIONS_MAX; i++) over.set(["m", i], 1);
      await assert.rejects(over.commit());
      const big = kv.atomic();
      for (let i = 0; i < 13; i++) big.set(["b", i], new Uint8Array(DENO_KV_VALUE_BYTES_MAX));
      await assert.rejects(big.commit(), new RegExp(`${DENO_KV_COMMIT_BYTES_MAX}`));
    } finally {
      kv.close();
    }
  });
});

Deno.test("DenoKvStorage's commit size check never lets through a commit Deno KV refuses", async () => {
  await withTempDir(async (dir) => {
    const storage = await DenoKvStorage.open(`${dir}/raftkv.db`);
    try {
      await storage.load();
      const hardState = { term: 1, vote: "a-node-id", commit: 1 };
      // The largest single entry the check accepts: Deno KV must accept it too.
      let accepted = 0;
      let refused = DENO_KV_COMMIT_BYTES_MAX;
      while (refused - accepted > 1) {
        const size = Math.floor((accepted + refused) / 2);
        const data = patternBytes(size, size);
        try {
          await storage.append([{ type: "command", index: 1, term: 1, data }], hardState);
          accepted = size;
        } catch (error) {
          assert(error instanceof StorageError, String(error));
          assert.match(error.message, /in one Deno KV commit/, "refused by the check, not Deno");
          refused = size;
        }
      }
      assert(accepted > DENO_KV_COMMIT_BYTES_MAX - 2048, `the check is too tight: ${accepted}`);
    } finally {
      await storage.close();
    }
  });
});
