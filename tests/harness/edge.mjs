// Starts an edge worker under workerd through miniflare 4's JS API, for the end-to-end tests
// and benchmarks in tests/.
//
// Usage: node edge.mjs <edge build dir> [port[,port...]]
//   env KEYPLANE_NODE_MODULES    the node_modules holding miniflare (xtask: .tools/node/node_modules)
//   env KEYPLANE_EDGE_BINDINGS   JSON object of vars and secrets (ORIGIN_URL, KEYPLANE_PEPPERS, ...)
//   env KEYPLANE_EDGE_PERSIST    directory keeping the Durable Object's storage across restarts
//                                (absent: in memory, lost when the process ends)
//   env KEYPLANE_EDGE_MODE       "keyplane" (default), "passthrough": a plain JS worker that
//                                forwards every request to ORIGIN_URL (the benchmark's baseline),
//                                "passthrough-edits": the same with Keyplane's header edits, or
//                                one of the other JS workers of `jsWorkers` below (the same
//                                edits made other ways, for the edge overhead benchmark)
//   env KEYPLANE_EDGE_INSPECTOR_PORT  a port for workerd's V8 inspector (Chrome DevTools
//                                protocol), for `profile.mjs` beside this file
//
// With several ports (Keyplane mode only), the edge runs as that many workers, each its own
// isolate listening on its own port, sharing one Durable Object namespace per class (the
// first worker's), as the isolates and locations of one Cloudflare deployment do: one key
// table store, and in global rate-limit mode one counter per key for all of them.
//
// Prints one JSON line {"url": "http://127.0.0.1:<port>/"} once the worker answers, then runs
// until its stdin closes (the test dropped its handle) or it gets SIGTERM/SIGINT, and disposes
// of workerd before exiting.
import { createRequire } from "node:module";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const [buildDir, portArg] = process.argv.slice(2);
if (!buildDir) {
  console.error("usage: node edge.mjs <edge build dir> [port[,port...]]");
  process.exit(2);
}
const ports = (portArg ?? "0").split(",").map(Number);
const nodeModules = process.env.KEYPLANE_NODE_MODULES;
if (!nodeModules) {
  console.error("edge.mjs: set KEYPLANE_NODE_MODULES to the node_modules that holds miniflare");
  process.exit(2);
}
const require = createRequire(join(resolve(nodeModules), "..", "package.json"));
const { Miniflare } = await import(pathToFileURL(require.resolve("miniflare")).href);

const bindings = JSON.parse(process.env.KEYPLANE_EDGE_BINDINGS ?? "{}");
const persist = process.env.KEYPLANE_EDGE_PERSIST;
const common = {
  compatibilityDate: process.env.KEYPLANE_COMPATIBILITY_DATE ?? "2026-04-01",
  bindings,
  // A placeholder Request.cf instead of fetching one from workers.cloudflare.com: no network.
  cf: false,
  host: "127.0.0.1",
  port: ports[0],
  ...(process.env.KEYPLANE_EDGE_INSPECTOR_PORT
    ? { inspectorPort: Number(process.env.KEYPLANE_EDGE_INSPECTOR_PORT) }
    : {}),
};

const passthrough = `
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    return fetch(env.ORIGIN_URL + url.pathname + url.search, request);
  },
};`;

// The same forward with the header edits a Keyplane worker makes on an allowed request (the
// caller's x-keyplane-* and credential dropped, five identity headers in, five rate-limit
// fields and the request id on the answer), with fixed values and no decision: the benchmark's
// baselines, showing what those edits cost by themselves in plain JS, each way workerd offers
// to make them. A JS worker is one request step and one answer step:
const decided = `
const IDENTITY = [
  ["x-keyplane-key-id", "key_4fJ0m0Vn0CMTZ7RXXOQnLr"],
  ["x-keyplane-org-id", "org_1SUvzdMWfHvM2Cb5SYnvGH"],
  ["x-keyplane-scopes", ""],
  ["x-keyplane-env", "live"],
  ["x-keyplane-request-id", "req_5hMbTnd4GwDZ0jS8cXb1qL"],
];
const RATE_LIMIT = [
  ["ratelimit-policy", '"key";q=100;w=60'],
  ["ratelimit", '"key";r=9;t=1'],
  ["x-ratelimit-limit", "100"],
  ["x-ratelimit-remaining", "9"],
  ["x-ratelimit-reset", "1"],
];
// The draft's two fields alone, without the legacy X-RateLimit-* trio.
const RATE_LIMIT_DRAFT = RATE_LIMIT.slice(0, 2);
const REQUEST_ID = ["x-keyplane-request-id", "req_5hMbTnd4GwDZ0jS8cXb1qL"];
const dropped = (name) => name === "x-api-key" || name === "host" || name.startsWith("x-keyplane-");
`;
const requestSteps = {
  // A copy of the request (method, headers, body stream, redirect), then its headers edited.
  copy: `
    const outgoing = new Request(target, request);
    const headers = outgoing.headers;
    for (const name of [...headers.keys()]) if (dropped(name)) headers.delete(name);
    for (const [name, value] of IDENTITY) headers.set(name, value);`,
  // A request from an init dictionary naming the incoming one's method, headers (copied by the
  // runtime), body stream and redirect mode, then its headers edited: unlike \`new Request(url,
  // request)\`, the runtime neither deep-clones \`request.cf\` nor takes the incoming signal.
  dict: `
    const outgoing = new Request(target, {
      method: request.method, headers: request.headers, body: request.body,
      redirect: request.redirect,
    });
    const headers = outgoing.headers;
    for (const name of [...headers.keys()]) if (dropped(name)) headers.delete(name);
    for (const [name, value] of IDENTITY) headers.set(name, value);`,
  // A new Headers of the kept fields plus the identity, and a request built from it and the
  // incoming body stream (the headers are not copied twice).
  fresh: `
    const headers = new Headers();
    for (const [name, value] of request.headers) if (!dropped(name)) headers.append(name, value);
    for (const [name, value] of IDENTITY) headers.set(name, value);
    const outgoing = new Request(target, {
      method: request.method, headers, body: request.body, redirect: "manual",
    });`,
};
// A new Response over the origin's body stream (status and headers copied), then the fields of
// the list named `list` and the request id set.
const relayWith = (list) => `
    const relayed = new Response(answer.body, answer);
    const fields = relayed.headers;
    for (const [name, value] of ${list}) fields.set(name, value);
    fields.set(...REQUEST_ID);
    return relayed;`;
const answerSteps = {
  // The five rate-limit fields and the request id.
  all: relayWith("RATE_LIMIT"),
  // The draft's two fields and the request id (the legacy trio left to 429s).
  draft: relayWith("RATE_LIMIT_DRAFT"),
  // The same with the request id alone (RATE_LIMIT_HEADERS = "on_429" on an admitted request).
  id: `
    const relayed = new Response(answer.body, answer);
    relayed.headers.set(...REQUEST_ID);
    return relayed;`,
  // A new Headers copied from the origin's and edited, handed to the Response's init.
  init: `
    const fields = new Headers(answer.headers);
    for (const [name, value] of RATE_LIMIT) fields.set(name, value);
    fields.set(...REQUEST_ID);
    return new Response(answer.body, {
      status: answer.status, statusText: answer.statusText, headers: fields,
    });`,
  // The origin's answer as it came (not the product: a floor for the answer's edits).
  none: `
    return answer;`,
};
const jsWorker = (requestStep, answerStep) => `${decided}
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const target = env.ORIGIN_URL + url.pathname + url.search;${requestSteps[requestStep]}
    const answer = await fetch(outgoing);${answerSteps[answerStep]}
  },
};`;
// The JS workers by mode: "passthrough-edits" is the product's edits made the usual way (the
// reference); the others are the alternatives the edge overhead benchmark measures beside it.
const jsWorkers = {
  "passthrough-edits": jsWorker("copy", "all"),
  "js-copy-id": jsWorker("copy", "id"),
  "js-copy-none": jsWorker("copy", "none"),
  "js-fresh-all": jsWorker("fresh", "all"),
  "js-copy-init": jsWorker("copy", "init"),
  "js-dict-all": jsWorker("dict", "all"),
  "js-dict-id": jsWorker("dict", "id"),
  "js-dict-draft": jsWorker("dict", "draft"),
};

const root = resolve(buildDir);
const mode = process.env.KEYPLANE_EDGE_MODE ?? "keyplane";
// The Keyplane worker; `owner` names the worker whose Durable Object classes it binds
// (undefined: its own).
const keyplaneWorker = (owner) => ({
  // The layout worker-build writes with Keyplane's entry (edge/js/shim.mjs).
  modules: [
    { type: "ESModule", path: join(root, "index.js") },
    { type: "ESModule", path: join(root, "worker", "shim.mjs") },
    { type: "CompiledWasm", path: join(root, "worker", "index.wasm") },
  ],
  modulesRoot: root,
  durableObjects: {
    KEYPLANE_TABLE: { className: "KeyTableStore", useSQLite: true, scriptName: owner },
    KEYPLANE_RATE_LIMITER: { className: "RateLimitCounter", scriptName: owner },
  },
});
const persistence = persist ? { durableObjectsPersist: persist } : {};
let options;
if (mode === "passthrough" || mode in jsWorkers) {
  options = { ...common, modules: true, script: mode === "passthrough" ? passthrough : jsWorkers[mode] };
} else if (ports.length === 1) {
  options = { ...common, ...keyplaneWorker(undefined), ...persistence };
} else {
  const { bindings: _, compatibilityDate, ...shared } = common;
  options = {
    ...shared,
    ...persistence,
    port: 0,
    workers: ports.map((port, index) => ({
      name: `isolate-${index}`,
      compatibilityDate,
      bindings,
      ...keyplaneWorker(index === 0 ? undefined : "isolate-0"),
      unsafeDirectSockets: [{ host: "127.0.0.1", port }],
    })),
  };
}
const mf = new Miniflare(options);

let stopping = false;
async function stop(code) {
  if (stopping) return;
  stopping = true;
  try {
    await mf.dispose();
  } finally {
    process.exit(code);
  }
}
process.on("SIGTERM", () => stop(0));
process.on("SIGINT", () => stop(0));
process.stdin.on("end", () => stop(0));
process.stdin.on("error", () => stop(0));
process.stdin.resume();

try {
  const url = await mf.ready;
  console.log(JSON.stringify({ url: ports.length === 1 ? url.href : `http://127.0.0.1:${ports[0]}/` }));
} catch (error) {
  console.error("edge.mjs: miniflare failed to start:", error);
  await stop(1);
}
