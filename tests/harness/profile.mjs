// Samples the CPU of an edge's isolates through workerd's V8 inspector and prints where the time
// went: each function's share of the samples, by itself and with what it calls. A developer's
// tool for the edge overhead work (README, edge benchmarks), not part of any test.
//
// Usage: start an edge with KEYPLANE_EDGE_INSPECTOR_PORT=<port> (see edge.mjs), put it under
// load, then: node profile.mjs <port> <seconds> [rows]
//   - the user worker's isolate is sampled every 50 µs for <seconds>;
//   - the profile is written to profile.cpuprofile in the working directory (Chrome DevTools
//     opens it), and the top [rows] (default 40) functions are printed, each with the start of
//     its source when it is in the bundled entry (worker-build minifies the glue's names; the
//     build is read from KEYPLANE_EDGE_BUILD, default edge/build).
import { readFileSync, writeFileSync } from "node:fs";

const [port, seconds, rows = "40"] = process.argv.slice(2);
if (!port || !seconds) {
  console.error("usage: node profile.mjs <inspector port> <seconds> [rows]");
  process.exit(2);
}
const targets = await (await fetch(`http://127.0.0.1:${port}/json`)).json();
const target = targets.find((t) => t.title.includes("core:user")) ?? targets[0];
console.log(`sampling ${target.title} for ${seconds} s`);

const socket = new WebSocket(target.webSocketDebuggerUrl);
const pending = new Map();
let lastId = 0;
socket.onmessage = (event) => {
  const message = JSON.parse(event.data);
  pending.get(message.id)?.(message.result);
  pending.delete(message.id);
};
const send = (method, params = {}) =>
  new Promise((resolve) => {
    lastId += 1;
    pending.set(lastId, resolve);
    socket.send(JSON.stringify({ id: lastId, method, params }));
  });
await new Promise((resolve) => (socket.onopen = resolve));
await send("Profiler.enable");
await send("Profiler.setSamplingInterval", { interval: 50 });
await send("Profiler.start");
await new Promise((resolve) => setTimeout(resolve, Number(seconds) * 1000));
const { profile } = await send("Profiler.stop");
writeFileSync("profile.cpuprofile", JSON.stringify(profile));

const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
const parent = new Map();
for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
const name = ({ functionName, url, lineNumber, columnNumber }) =>
  `${functionName || "(anonymous)"} ${url.split("/").pop()}:${lineNumber}:${columnNumber}`;
const own = new Map();
const within = new Map();
let total = 0;
profile.samples.forEach((sample, index) => {
  const time = profile.timeDeltas[index] ?? 0;
  total += time;
  const leaf = name(nodes.get(sample).callFrame);
  own.set(leaf, (own.get(leaf) ?? 0) + time);
  const counted = new Set();
  for (let id = sample; id !== undefined; id = parent.get(id)) {
    const frame = name(nodes.get(id).callFrame);
    if (!counted.has(frame)) within.set(frame, (within.get(frame) ?? 0) + time);
    counted.add(frame);
  }
});
// The bundled entry (its glue's names are minified): the start of each function's source.
const buildDir = process.env.KEYPLANE_EDGE_BUILD ?? "edge/build";
let shim = null;
try {
  shim = readFileSync(`${buildDir}/worker/shim.mjs`, "utf8").split("\n");
} catch {
  console.log(`(no ${buildDir}/worker/shim.mjs: the glue's functions are shown by name only)`);
}
const excerpt = (frame) => {
  const [, line, column] = frame.match(/ shim\.mjs:(\d+):(\d+)$/) ?? [];
  return line === undefined ? "" : (shim?.[Number(line)]?.slice(Number(column), Number(column) + 80) ?? "");
};
for (const [title, shares] of [["by itself", own], ["with what it calls", within]]) {
  console.log(`\n== ${title} (% of samples)`);
  const top = [...shares.entries()].sort((a, b) => b[1] - a[1]).slice(0, Number(rows));
  for (const [frame, time] of top) {
    const source = excerpt(frame).replace(/\n/g, " ");
    console.log(`${((100 * time) / total).toFixed(1).padStart(5)}  ${frame}${source ? "  | " + source : ""}`);
  }
}
process.exit(0);
