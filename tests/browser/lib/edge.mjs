// The edge's answer to a key: the same request `Deployment::through_edge` sends (GET with the
// key in `x-api-key`), polled until it is what a step expects.

import { poll } from "./steps.mjs";

/** The edge's status for `key` on `path` (no key when `key` is null). */
export async function statusAtEdge(edgeUrl, path, key) {
  const headers = key === null ? {} : { "x-api-key": key };
  const response = await fetch(new URL(path, edgeUrl), { headers, redirect: "manual" });
  await response.arrayBuffer();
  return response.status;
}

/** Waits until the edge answers `key` with `wanted`; how long that took. */
export async function expectAtEdge(edgeUrl, path, key, wanted, what, timeoutMs = 15_000) {
  let last;
  const { ms } = await poll(`${what}: the edge answers ${wanted}`, timeoutMs, async () => {
    last = await statusAtEdge(edgeUrl, path, key);
    return last === wanted;
  }).catch((error) => {
    throw new Error(`${error.message} (last status ${last})`);
  });
  return ms;
}
