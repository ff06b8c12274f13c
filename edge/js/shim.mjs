// The worker's entry module (worker-build's CUSTOM_SHIM template; `cargo xtask build` passes it).
//
// worker-build's default entry wraps every handler and class in Proxies that re-instantiate the
// wasm module after a panic. The edge's request path cannot panic on input (no unwrap; fuzzed),
// so this entry calls the Rust handler directly. The handler (`fetch` in edge/src/lib.rs)
// answers synchronously when it can: a Response (the edge answered), a Promise (the
// asynchronous path), or a Forward (edge/src/gate.rs): a request for the origin that this
// module fetches, handing the answer back to Rust (`relay`) or the failure (`fail`). Awaiting
// the origin here rather than in a Rust future is what keeps the per-request cost of entering
// wasm low (README, edge overhead); every decision is made in Rust.
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

export default {
  fetch(request, env, ctx) {
    $WAIT_UNTIL_RESPONSE
    const step = imports.fetch(request, env, ctx);
    if (step instanceof imports.Forward) {
      let fetched;
      try {
        fetched = fetch(step.request);
      } catch (error) {
        return step.fail(error);
      }
      return fetched.then(
        (response) => step.relay(response),
        (error) => step.fail(error),
      );
    }
    return step;
  },
};
