// Header edits that the gate (edge/src/gate.rs, edge/src/headers.rs) decides in Rust,
// applied here in one call each: through wasm-bindgen's generated bindings every name and
// every value would cross the wasm boundary (and be decoded) on its own. Lists are
// newline-separated: header names and values cannot contain a newline.

/** Every header name in `headers`, each followed by a newline. */
export function headerNames(headers) {
  let names = "";
  for (const name of headers.keys()) {
    names += name + "\n";
  }
  return names;
}

/**
 * Deletes the names listed in `deletes` (`name\n…`) and sets the pairs listed in `sets`
 * (`name\nvalue\n…`), in that order.
 */
export function editHeaders(headers, deletes, sets) {
  if (deletes.length > 0) {
    for (const name of deletes.split("\n")) {
      if (name.length > 0) headers.delete(name);
    }
  }
  const parts = sets.split("\n");
  for (let i = 0; i + 1 < parts.length; i += 2) {
    headers.set(parts[i], parts[i + 1]);
  }
}
