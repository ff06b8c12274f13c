//! A response body read in pieces of at least [`PIECE_BYTES`], gathered by `edge/js/pieces.js`.
//!
//! The runtime hands a body over in pieces of about 4 KB; a snapshot of 1M keys (48 MB) read
//! through the `worker` crate's byte stream crosses into wasm some 12,000 times, each with a
//! promise, an allocation and a copy. Gathered in JS first, it crosses about fifty times, into
//! one reused buffer.

use worker::wasm_bindgen::{self, JsCast, JsValue, prelude::wasm_bindgen};
use worker::wasm_bindgen_futures::JsFuture;
use worker::{Response, ResponseBody, js_sys, web_sys};

/// The least a piece holds (the last one excepted).
pub const PIECE_BYTES: u32 = 1 << 20;

#[wasm_bindgen(module = "/js/pieces.js")]
extern "C" {
    #[wasm_bindgen(js_name = bodyReader, catch)]
    fn body_reader(stream: &web_sys::ReadableStream) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(js_name = readPiece)]
    fn read_piece(reader: &JsValue, min_bytes: u32) -> js_sys::Promise;
}

/// Reads a response's body a piece at a time.
pub struct Pieces {
    reader: Option<JsValue>,
    buffer: Vec<u8>,
}

impl Pieces {
    /// Starts reading `response`'s body (an empty body gives no pieces).
    pub fn of(response: &Response) -> worker::Result<Self> {
        let reader = match response.body() {
            ResponseBody::Stream(stream) => Some(body_reader(stream).map_err(js_error)?),
            ResponseBody::Empty => None,
            ResponseBody::Body(_) => {
                return Err(worker::Error::RustError(
                    "a fetched body is a stream".into(),
                ));
            }
        };
        Ok(Pieces {
            reader,
            buffer: Vec::new(),
        })
    }

    /// The next piece, or `None` at the end. The slice is valid until the next call.
    pub async fn next(&mut self) -> worker::Result<Option<&[u8]>> {
        let Some(reader) = &self.reader else {
            return Ok(None);
        };
        let piece = JsFuture::from(read_piece(reader, PIECE_BYTES))
            .await
            .map_err(js_error)?;
        if piece.is_undefined() {
            self.reader = None;
            return Ok(None);
        }
        let piece: js_sys::Uint8Array = piece.dyn_into().map_err(js_error)?;
        self.buffer.resize(piece.length() as usize, 0);
        piece.copy_to(&mut self.buffer);
        Ok(Some(&self.buffer))
    }
}

fn js_error(error: JsValue) -> worker::Error {
    worker::Error::JsError(
        error
            .as_string()
            .unwrap_or_else(|| format!("reading a body failed: {error:?}")),
    )
}
