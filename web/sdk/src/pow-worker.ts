/**
 * The proof-of-work Web Worker (built to pow-worker.js): runs `search` in slices off the
 * page's main thread, so a page stays responsive while a hard puzzle is solved. One job
 * at a time per message: {job, seed, requestId, difficulty} in, {job, nonce} out (or
 * {job, error}). A {cancel: job} message stops that job between slices.
 */
import { MAX_DIFFICULTY, search } from "./pow.js";

interface WorkerScope {
  onmessage: ((event: { data: unknown }) => void) | null;
  postMessage(message: unknown): void;
}
declare const self: WorkerScope;

const SLICE = 1 << 14;
const cancelled = new Set<number>();

async function run(job: number, seed: Uint8Array, requestId: number, difficulty: number): Promise<void> {
  if (difficulty <= 0) {
    self.postMessage({ job, nonce: null });
    return;
  }
  if (difficulty > MAX_DIFFICULTY) {
    self.postMessage({ job, error: "difficulty above 32" });
    return;
  }
  for (let from = 0; ; from += SLICE) {
    if (cancelled.delete(job)) return;
    const nonce = search(seed, requestId, difficulty, from, SLICE);
    if (nonce !== null) {
      self.postMessage({ job, nonce });
      return;
    }
    // Let a cancel message in between slices.
    await new Promise<void>((resolve) => setTimeout(() => resolve(), 0));
  }
}

self.onmessage = (event) => {
  const data = event.data as { job: number; seed: Uint8Array; requestId: number; difficulty: number; cancel?: number };
  if (typeof data.cancel === "number") {
    cancelled.add(data.cancel);
    return;
  }
  void run(data.job, data.seed, data.requestId, data.difficulty);
};
