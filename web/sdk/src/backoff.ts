/**
 * The reconnect schedule, the same as the Python SDK's (client/backoff.py): exponential
 * backoff with "equal jitter" (each delay is 50-100 % of its nominal value, so a crowd
 * that dropped together spreads out), bounded by a total budget (a dropped seat is held
 * only for the relay's `resume_grace`, so retrying after that can only fail). Pure; the
 * caller sleeps.
 */
export const BASE = 0.2;
export const CAP = 10.0;
export const FACTOR = 2.0;
export const DEFAULT_BUDGET = 60.0;

/** Delays in seconds before each reconnect attempt; their sum never exceeds `budget`. */
export function* backoffDelays(
  budget: number = DEFAULT_BUDGET,
  first = 0,
  random: () => number = Math.random,
): Generator<number> {
  let spent = 0;
  for (let n = 0; spent < budget; n++) {
    const nominal = Math.min(CAP, BASE * FACTOR ** n);
    let delay = nominal * (0.5 + 0.5 * random());
    if (n === 0) delay = Math.max(delay, first);
    delay = Math.min(delay, budget - spent);
    spent += delay;
    yield delay;
  }
}
