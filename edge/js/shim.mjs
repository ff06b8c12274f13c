// The worker's entry module (worker-build's CUSTOM_SHIM template; `cargo xtask build` passes it).
//
// worker-build's default entry wraps every handler and class in Proxies that re-instantiate the
// wasm module after a panic. The edge's request path cannot panic on input (no unwrap; fuzzed),
// so this entry calls the Rust handlers directly: a plain module worker whose fetch goes
// straight into wasm, which measurably lowers the per-request cost (README, edge overhead).
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
    return imports.fetch(request, env, ctx);
  },
};
