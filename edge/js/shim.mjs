// The worker's entry module (worker-build's CUSTOM_SHIM template; `cargo xtask build` passes it).
//
// worker-build's default entry wraps every handler and class in Proxies that re-instantiate the
// wasm module after a panic. The edge's request path cannot panic on input (no unwrap; fuzzed),
// so this entry calls the Rust handler directly. The handler (`fetch` in edge/src/lib.rs)
// answers synchronously when it can: a Response (the edge answered), a Forward
// (edge/js/headers.js, edge/src/forward.rs): a request for the origin that this module
// fetches, relaying the answer with the fields the Forward lists and reporting its status to
// Rust (`forwarded`, for the usage event), or handing a failure to Rust
// (`origin_unreachable`, `relay_failed`); or a Promise of either (the asynchronous path).
// Awaiting the origin here rather than in a Rust future is what keeps the per-request cost of
// entering wasm low (README, edge overhead); every decision is made in Rust.
import * as imports from "./index_bg.js";
export * from "./index_bg.js";
import wasmModule from "./index.wasm";
$SNIPPET_JS_IMPORTS

const instance = new WebAssembly.Instance(wasmModule, {
  "./index_bg.js": imports,
  $SNIPPET_WASM_IMPORTS
});
imports.__wbg_set_wasm(instance.exports);
instance.exports.__wbindgen_start?.();

// A Response is the answer; anything else is a Forward (edge/js/headers.js): its request is
// fetched and the answer relayed with the Forward's fields, its status reported to Rust for
// the usage event (`forwarded`); a failure is answered by Rust (`origin_unreachable`,
// `relay_failed`: 502 / 500 with the same fields).
function settle(step) {
  if (step instanceof Response) {
    return step;
  }
  const forward = step;
  let fetched;
  try {
    fetched = fetch(forward.request);
  } catch (error) {
    return imports.origin_unreachable(forward.usage, forward.sets, error);
  }
  return fetched.then(
    (origin) => {
      let relayed;
      try {
        relayed = forward.relay(origin);
      } catch (error) {
        return imports.relay_failed(forward.usage, forward.sets, error);
      }
      if (forward.usage !== 0) {
        imports.forwarded(forward.usage, relayed.status);
      }
      return relayed;
    },
    (error) => imports.origin_unreachable(forward.usage, forward.sets, error),
  );
}

export default {
  fetch(request, env, ctx) {
    $WAIT_UNTIL_RESPONSE
    const step = imports.fetch(request, env, ctx);
    // The asynchronous path (a Promise) ends in a Response or a Forward too.
    return step instanceof Promise ? step.then(settle) : settle(step);
  },
};
