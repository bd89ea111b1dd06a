import { errorMessage } from "./_validate.ts";

/** Another live process holds the data dir. */
export class DirLockedError extends Error {
  override name = "DirLockedError";
  constructor(readonly dir: string, readonly pid: number | undefined) {
    super(
      `Cannot use data dir "${dir}": it is in use by another raftkv process (pid ${
        pid ?? "unknown"
      })`,
    );
  }
}

export interface DirLock {
  /** Releases the lock; the process dying releases it as well. */
  release(): void;
}

export const LOCK_FILE_NAME = "raftkv.lock";

/**
 * Takes an exclusive lock on `dir` (which must exist), or throws DirLockedError at once.
 *
 * The lock is an flock(2)-style lock on <dir>/raftkv.lock (Deno.FsFile.tryLock): the kernel
 * drops it when the holder's file is closed, which includes any death of the process, SIGKILL
 * too, so a stale lock cannot outlive its process. The pid written in the file is only for the
 * error message. Two opens in one process conflict as well.
 */
export async function lockDir(dir: string): Promise<DirLock> {
  const path = `${dir}/${LOCK_FILE_NAME}`;
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true, write: true, create: true });
  } catch (error) {
    throw new Error(`Cannot use data dir "${dir}": it is not writable: ${errorMessage(error)}`, {
      cause: error,
    });
  }
  let locked: boolean;
  try {
    locked = await file.tryLock(true);
  } catch (error) {
    file.close();
    throw new Error(`Cannot lock data dir "${dir}": ${errorMessage(error)}`, { cause: error });
  }
  if (!locked) {
    file.close();
    throw new DirLockedError(dir, await readPid(path));
  }
  try {
    await file.truncate(0);
    await file.write(new TextEncoder().encode(`${Deno.pid}\n`));
  } catch (error) {
    file.close();
    throw new Error(`Cannot use data dir "${dir}": it is not writable: ${errorMessage(error)}`, {
      cause: error,
    });
  }
  let released = false;
  return {
    release(): void {
      if (released) return;
      released = true;
      file.close();
    },
  };
}

async function readPid(path: string): Promise<number | undefined> {
  try {
    const pid = Number((await Deno.readTextFile(path)).trim());
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}
