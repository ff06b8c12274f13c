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

/**
 * The request for the origin: `target` with `incoming`'s method, headers (copied by the
 * runtime), body stream (moved, not copied) and redirect mode, then the edits applied.
 *
 * Built from an init dictionary rather than `new Request(target, incoming)`, which also
 * deep-clones `incoming.cf` and carries the incoming signal (ignored for subrequests under the
 * compatibility flags in use): neither changes what reaches the origin. A GET or HEAD with a
 * body (legal HTTP, refused in an init dictionary by the runtime) takes that copy, which
 * keeps the body.
 */
export function outgoingRequest(target, incoming, deletes, sets) {
  const method = incoming.method;
  const body = incoming.body;
  const request =
    body !== null && (method === "GET" || method === "HEAD")
      ? new Request(target, incoming)
      : new Request(target, {
          method,
          headers: incoming.headers,
          body,
          redirect: incoming.redirect,
        });
  editHeaders(request.headers, deletes, sets);
  return request;
}

/**
 * The origin's answer with the fields of `sets` added: a new Response over the same body
 * stream (status and headers copied by the runtime; the origin's own headers are immutable).
 */
export function relayedAnswer(origin, sets) {
  const relayed = new Response(origin.body, origin);
  editHeaders(relayed.headers, "", sets);
  return relayed;
}
