// A body read in large pieces (edge/src/pieces.rs). The runtime hands a stream's bytes over in
// pieces of about 4 KB: some 12,000 for the 48 MB snapshot of a 1M-key table. Each crossing
// into wasm on its own (a promise, an allocation, a copy) costs more than its bytes; gathered
// here, a snapshot crosses in about fifty.

/**
 * A reader of `stream`, a ReadableStream of bytes: a BYOB reader when the stream offers one
 * (the runtime then fills a whole piece natively, with no JS turn per 4 KB), else a plain one.
 */
export function bodyReader(stream) {
  try {
    const byob = stream.getReader({ mode: "byob" });
    if (typeof byob.readAtLeast === "function") return { byob };
    byob.releaseLock();
  } catch {
    // Not a byte stream: read it plainly.
  }
  return { plain: stream.getReader() };
}

/**
 * The next piece of the reader's stream: at least `minBytes` bytes, fewer only at its end,
 * and `undefined` once it has ended.
 */
export async function readPiece(reader, minBytes) {
  if (reader.byob) {
    const { done, value } = await reader.byob.readAtLeast(minBytes, new Uint8Array(minBytes));
    if (value && value.byteLength > 0) return value;
    return done ? undefined : readPiece(reader, minBytes);
  }
  const parts = [];
  let length = 0;
  while (length < minBytes) {
    const { done, value } = await reader.plain.read();
    if (done) break;
    parts.push(value);
    length += value.byteLength;
  }
  if (parts.length === 0) return undefined;
  if (parts.length === 1) return parts[0];
  const piece = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    piece.set(part, at);
    at += part.byteLength;
  }
  return piece;
}
