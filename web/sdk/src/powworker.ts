/**
 * Proofs of work in a Web Worker: `workerSolver(url)` gives the SDK a `PowSolver` that
 * posts each puzzle to one module worker (started on first use, reused after) running
 * pow-worker.js. `defaultSolver(url)` uses it where `Worker` exists and falls back to
 * solving in slices on the calling thread (Node, React Native, old browsers).
 */
import { inlineSolver, type PowSolver } from "./pow.js";

/** The part of the Web Worker interface used here (declared so the core needs no DOM lib). */
interface WorkerLike {
  postMessage(message: unknown): void;
  onmessage: ((event: { data: unknown }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  terminate(): void;
}
type WorkerConstructor = new (url: string, options?: { type?: string; name?: string }) => WorkerLike;

interface Job {
  resolve: (nonce: Uint8Array | null) => void;
  reject: (error: Error) => void;
}

/** A solver backed by one module worker loaded from `url` (the built pow-worker.js). */
export function workerSolver(url: string | { href: string }, Ctor?: WorkerConstructor): PowSolver {
  const Worker = Ctor ?? (globalThis as { Worker?: WorkerConstructor }).Worker;
  if (Worker === undefined) throw new TypeError("no Worker in this runtime: use inlineSolver()");
  let worker: WorkerLike | null = null;
  let next = 0;
  const jobs = new Map<number, Job>();
  const start = (): WorkerLike => {
    const w = new Worker(typeof url === "string" ? url : url.href, { type: "module", name: "haven-pow" });
    w.onmessage = (event) => {
      const data = event.data as { job: number; nonce?: Uint8Array | null; error?: string };
      const job = jobs.get(data.job);
      if (job === undefined) return;
      jobs.delete(data.job);
      if (data.error !== undefined) job.reject(new RangeError(data.error));
      else job.resolve(data.nonce ?? null);
    };
    w.onerror = () => {
      // A worker that failed to load or crashed: fail its jobs, start afresh next time.
      for (const [, job] of jobs) job.reject(new Error("the proof-of-work worker failed"));
      jobs.clear();
      w.terminate();
      worker = null;
    };
    return w;
  };
  return (seed, requestId, difficulty) => {
    if (difficulty <= 0) return Promise.resolve(null);
    worker ??= start();
    const job = ++next;
    const w = worker;
    return new Promise((resolve, reject) => {
      jobs.set(job, { resolve, reject });
      w.postMessage({ job, seed, requestId, difficulty });
    });
  };
}

/** The worker where the runtime has one and a URL is given; otherwise inline slices. */
export function defaultSolver(workerUrl?: string | { href: string }): PowSolver {
  const hasWorker = typeof (globalThis as { Worker?: unknown }).Worker === "function";
  return workerUrl !== undefined && hasWorker ? workerSolver(workerUrl) : inlineSolver();
}
