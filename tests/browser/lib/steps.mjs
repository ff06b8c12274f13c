// Steps that say what they do, and failures that name the step they happened in.

let current = "(before the first step)";

/** Runs `body` as the step `name`: prints it, and prefixes any error with it. */
export async function step(name, body) {
  current = name;
  console.log(`==> ${name}`);
  try {
    return await body();
  } catch (error) {
    if (error instanceof StepError) throw error;
    throw new StepError(name, error);
  }
}

/** A note under the current step. */
export function note(message) {
  console.log(`    ${message}`);
}

/** Fails the current step with `message`. */
export function fail(message) {
  throw new Error(message);
}

/** Fails the current step unless `condition` holds. */
export function check(condition, message) {
  if (!condition) fail(message);
}

/** The step that is running (for failures raised outside a step's body). */
export function currentStep() {
  return current;
}

/** An error raised inside a named step. */
export class StepError extends Error {
  constructor(stepName, cause) {
    super(`step "${stepName}" failed: ${cause?.message ?? cause}`, { cause });
    this.stepName = stepName;
  }
}

/** Polls `probe` every 100 ms until it returns a truthy value, failing after `timeoutMs`. */
export async function poll(what, timeoutMs, probe) {
  const started = Date.now();
  let last;
  for (;;) {
    try {
      const value = await probe();
      if (value) return { value, ms: Date.now() - started };
      last = undefined;
    } catch (error) {
      last = error;
    }
    if (Date.now() - started > timeoutMs) {
      const why = last ? ` (last error: ${last.message})` : "";
      fail(`${what}: still not true after ${timeoutMs} ms${why}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
