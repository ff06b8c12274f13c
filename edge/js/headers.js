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
 * runtime), body stream (moved, not copied) and redirect mode.
 *
 * Built from an init dictionary rather than `new Request(target, incoming)`, which also
 * deep-clones `incoming.cf` and carries the incoming signal (ignored for subrequests under the
 * compatibility flags in use): neither changes what reaches the origin. A GET or HEAD with a
 * body (legal HTTP, refused in an init dictionary by the runtime) takes that copy, which
 * keeps the body.
 */
function outgoingRequest(target, incoming) {
  const method = incoming.method;
  const body = incoming.body;
  return body !== null && (method === "GET" || method === "HEAD")
    ? new Request(target, incoming)
    : new Request(target, {
        method,
        headers: incoming.headers,
        body,
        redirect: incoming.redirect,
      });
}

/**
 * A request for the origin, as the gate hands it to the entry module (edge/src/forward.rs):
 * `request` to fetch; the pairs of `parts` from `answerAt` on, the fields its answer gets (the
 * rate-limit fields and the request id); and `usage`, the handle of the request's usage event
 * (0: none), to report the answer's status with. A plain object: nothing in it is tied to the
 * wasm memory.
 */
class Forward {
  constructor(request, parts, answerAt, usage) {
    this.request = request;
    this.parts = parts;
    this.answerAt = answerAt;
    this.usage = usage;
  }

  /**
   * The origin's answer with the fields set: a new Response over the same body stream (status
   * and headers copied by the runtime; the origin's own headers are immutable).
   */
  relay(origin) {
    const relayed = new Response(origin.body, origin);
    const headers = relayed.headers;
    const parts = this.parts;
    for (let at = this.answerAt; at + 1 < parts.length; at += 2) {
      headers.set(parts[at], parts[at + 1]);
    }
    return relayed;
  }

  /** The answer's fields as a list (`name\nvalue\n…`), for the failure answers. */
  get sets() {
    return this.parts.slice(this.answerAt).join("\n");
  }
}

/**
 * The gate's Forward, made in one call from one string: `plan` lists (newline-separated) the
 * origin's URL, then `deletes` header names to drop from the incoming headers, then `sets`
 * name/value pairs to set on them, then the pairs the answer gets.
 */
export function forwardStep(incoming, plan, deletes, sets, usage) {
  const parts = plan.split("\n");
  const request = outgoingRequest(parts[0], incoming);
  const headers = request.headers;
  let at = 1;
  for (const end = at + deletes; at < end; at += 1) {
    headers.delete(parts[at]);
  }
  for (const end = at + 2 * sets; at < end; at += 2) {
    headers.set(parts[at], parts[at + 1]);
  }
  return new Forward(request, parts, at, usage);
}
