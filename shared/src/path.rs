//! The request path as the edge decides on it and forwards it: one canonical form.
//!
//! The edge forwards with `new Request(<origin> + <path and query>)`, and the runtime parses
//! that URL by the WHATWG URL standard (special schemes): `\` is a separator; `.` and `..`
//! segments, written plainly or percent-encoded (`%2e`, `.%2e`, `%2e.`, `%2e%2e`, any case),
//! are resolved, and a `..` cancels the segment before it even when that segment is empty
//! (`/v1//%2e%2e/contacts` is `/v1/contacts`); tabs and newlines are removed and trailing
//! controls and spaces stripped; code points of the path (or query) percent-encode set are
//! percent-encoded as UTF-8. [`CanonicalTarget::parse`] does exactly that, once: the edge
//! decides on the result and forwards the result. The result is a fixed point of the parse
//! (parsing it again changes nothing), so the origin receives the bytes the decision saw.
//!
//! The form is canonical for the URL standard, not for every origin: an origin may decode
//! `%2F` into a separator, drop empty segments, treat `..;` as `..`, or decode twice.
//! [`Ambiguity`] names what the raw path does that such readers could take another way; the
//! edge's strict mode refuses those paths instead of guessing (the route policy also reads
//! every path leniently, see `policy`).

use std::borrow::Cow;

use thiserror::Error;

/// How many rounds of percent-decoding the lenient readings apply (`%25252F` → `%252F` →
/// `%2F` → `/`).
pub(crate) const DECODE_ROUNDS: usize = 3;

/// A request's path and query in the form the forwarding gives them, with what the raw form
/// did that other readers could take another way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalTarget<'a> {
    text: Cow<'a, str>,
    path_len: usize,
    ambiguity: Option<Ambiguity>,
}

/// Something a raw path does that a reader other than the URL standard may take another way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Ambiguity {
    /// A dot segment written with percent-encoding (`%2e%2e`, `.%2E`, also double-encoded) or
    /// with `;` parameters (`..;x`).
    #[error("a dot segment is percent-encoded or carries parameters")]
    EncodedDotSegment,
    /// A segment that percent-decodes (once or more) into `/` or `\`.
    #[error("a segment decodes into a separator")]
    EncodedSeparator,
    /// A raw `\`: a separator to the URL standard, a character to RFC 3986.
    #[error("the path contains a backslash")]
    Backslash,
    /// An empty segment before the last (`//`): some origins merge slashes, others do not.
    #[error("the path has an empty segment")]
    EmptySegment,
    /// A control character (U+0000–U+001F, U+007F), raw or percent-encoded.
    #[error("the path contains a control character")]
    ControlCharacter,
}

impl<'a> CanonicalTarget<'a> {
    /// Parses a path and query (`/p?q`, as the part of a URL after its host; a fragment is
    /// dropped) the way the runtime parses the forwarded URL. Borrows `target` when it is
    /// already canonical, the common case.
    pub fn parse(target: &'a str) -> Self {
        let scan = Scan::of(target);
        let target = &target[..scan.end];
        if !scan.rewrite {
            return CanonicalTarget {
                text: Cow::Borrowed(target),
                path_len: scan.path_end,
                ambiguity: scan.ambiguity,
            };
        }
        let (text, path_len) = canonicalize(target);
        CanonicalTarget {
            text: Cow::Owned(text),
            path_len,
            ambiguity: scan.ambiguity,
        }
    }

    /// The canonical path (`/` and up, without the query).
    pub fn path(&self) -> &str {
        &self.text[..self.path_len]
    }

    /// The canonical path and query, as forwarded.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// What the raw path did that other readers could take another way, if anything.
    pub fn ambiguity(&self) -> Option<Ambiguity> {
        self.ambiguity
    }

    /// Whether the input was canonical already (nothing was allocated).
    pub fn is_borrowed(&self) -> bool {
        matches!(self.text, Cow::Borrowed(_))
    }

    /// The canonical path and query.
    pub fn into_text(self) -> Cow<'a, str> {
        self.text
    }
}

/// Byte classes, from [`CLASSES`].
const PATH_ENCODED: u8 = 1;
const QUERY_ENCODED: u8 = 2;
const CONTROL: u8 = 4;
/// `/`, `\\`, `%`, `;`, `?`, `#`: bytes the scan looks at.
const MARK: u8 = 8;

/// Each byte's classes: percent-encoded in a path (the C0 control percent-encode set —
/// controls and everything above `~` — plus space, `"`, `#`, `<`, `>`, `?`, `^`, `` ` ``, `{`,
/// `}`), percent-encoded in the query of a special URL (controls, space, `"`, `#`, `<`, `>`,
/// `'`, above `~`), a control character (U+0000–U+001F, U+007F), a mark.
static CLASSES: [u8; 256] = {
    let mut classes = [0u8; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        let mut class = 0;
        if b <= b' ' || b >= 0x7f {
            class |= PATH_ENCODED | QUERY_ENCODED;
        }
        if b < 0x20 || b == 0x7f {
            class |= CONTROL;
        }
        match b {
            b'"' | b'#' | b'<' | b'>' => class |= PATH_ENCODED | QUERY_ENCODED,
            b'?' | b'^' | b'`' | b'{' | b'}' => class |= PATH_ENCODED,
            b'\'' => class |= QUERY_ENCODED,
            _ => {}
        }
        if matches!(b, b'/' | b'\\' | b'%' | b';' | b'?' | b'#') {
            class |= MARK;
        }
        classes[byte] = class;
        byte += 1;
    }
    classes
};

fn encoded_in_path(byte: u8) -> bool {
    CLASSES[usize::from(byte)] & PATH_ENCODED != 0
}

fn encoded_in_query(byte: u8) -> bool {
    CLASSES[usize::from(byte)] & QUERY_ENCODED != 0
}

fn is_control(byte: u8) -> bool {
    CLASSES[usize::from(byte)] & CONTROL != 0
}

/// One pass over a raw path and query: where they end, whether the parse would change them,
/// and what the path does that other readers could take another way.
struct Scan {
    /// Where the fragment starts (or the end).
    end: usize,
    /// Where the query starts (or the fragment, or the end).
    path_end: usize,
    /// Whether the canonical form differs from the input.
    rewrite: bool,
    ambiguity: Option<Ambiguity>,
}

impl Scan {
    fn of(target: &str) -> Self {
        let bytes = target.as_bytes();
        let mut rewrite = bytes.first() != Some(&b'/');
        let (mut control, mut backslash) = (false, false);
        let mut in_segments = None;
        let mut start = usize::from(!rewrite);
        let mut marked = false;
        let mut i = start;
        let mut end_segment =
            |from: usize, to: usize, last: bool, marked: bool, rewrite: &mut bool| {
                let segment = &target[from..to];
                if segment.is_empty() && !last {
                    in_segments.get_or_insert(Ambiguity::EmptySegment);
                }
                if segment.len() <= 6
                    && matches!(segment.as_bytes().first(), Some(b'.' | b'%'))
                    && dot_segment(segment).is_some()
                {
                    *rewrite = true;
                }
                if marked && let Some(found) = segment_ambiguity(segment) {
                    in_segments.get_or_insert(found);
                }
            };
        while let Some(&byte) = bytes.get(i) {
            let class = CLASSES[usize::from(byte)];
            if class & MARK != 0 {
                match byte {
                    b'?' | b'#' => break,
                    b'/' | b'\\' => {
                        backslash |= byte == b'\\';
                        rewrite |= byte == b'\\';
                        end_segment(start, i, false, marked, &mut rewrite);
                        (start, marked) = (i + 1, false);
                    }
                    _ => marked = true,
                }
            }
            rewrite |= class & PATH_ENCODED != 0;
            control |= class & CONTROL != 0;
            i += 1;
        }
        end_segment(start, i, true, marked, &mut rewrite);
        let path_end = i;
        if bytes.get(i) == Some(&b'?') {
            i += 1;
            while let Some(&byte) = bytes.get(i) {
                if byte == b'#' {
                    break;
                }
                rewrite |= encoded_in_query(byte);
                i += 1;
            }
        }
        let ambiguity = if control {
            Some(Ambiguity::ControlCharacter)
        } else if backslash {
            Some(Ambiguity::Backslash)
        } else {
            in_segments
        };
        Scan {
            end: i,
            path_end,
            rewrite,
            ambiguity,
        }
    }
}

/// A single-dot (`.`, `%2e`) or double-dot (`..`, `.%2e`, `%2e.`, `%2e%2e`) segment, any case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dot {
    Single,
    Double,
}

fn dot_segment(segment: &str) -> Option<Dot> {
    let is_dot = |part: &str| part == "." || part.eq_ignore_ascii_case("%2e");
    match segment.len() {
        1 | 3 if is_dot(segment) => Some(Dot::Single),
        2 | 4 | 6 => {
            let split = if segment.starts_with('.') {
                1
            } else {
                3.min(segment.len())
            };
            let (first, second) = segment.split_at_checked(split)?;
            (is_dot(first) && is_dot(second)).then_some(Dot::Double)
        }
        _ => None,
    }
}

/// The WHATWG parse of a path and query that is not canonical: (text, length of the path).
fn canonicalize(target: &str) -> (String, usize) {
    let trimmed = target.trim_end_matches(|c: char| c <= ' ');
    let cleaned: Cow<'_, str> = if trimmed.contains(['\t', '\n', '\r']) {
        Cow::Owned(trimmed.replace(['\t', '\n', '\r'], ""))
    } else {
        Cow::Borrowed(trimmed)
    };
    let (path, query) = match cleaned.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (&*cleaned, None),
    };
    let mut out = String::with_capacity(cleaned.len() + 8);
    // Where each segment (its leading `/`) starts in `out`, for `..` to cut back to.
    let mut starts: Vec<usize> = Vec::new();
    let body = path.strip_prefix(['/', '\\']).unwrap_or(path);
    let mut segments = body.split(['/', '\\']).peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        match dot_segment(segment) {
            Some(Dot::Double) => {
                if let Some(start) = starts.pop() {
                    out.truncate(start);
                }
            }
            Some(Dot::Single) => {}
            None => {
                starts.push(out.len());
                out.push('/');
                percent_encode_into(&mut out, segment, encoded_in_path);
                continue;
            }
        }
        // A dot segment at the end leaves an empty last segment (`/a/b/..` is `/a/`).
        if last {
            out.push('/');
        }
    }
    let path_len = out.len();
    if let Some(query) = query {
        out.push('?');
        percent_encode_into(&mut out, query, encoded_in_query);
    }
    (out, path_len)
}

/// Appends `text` to `out`, percent-encoding (upper-case hex, UTF-8) the bytes `encoded`
/// selects; `%` itself is kept, so escapes pass through as they are.
fn percent_encode_into(out: &mut String, text: &str, encoded: fn(u8) -> bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for c in text.chars() {
        let mut utf8 = [0u8; 4];
        for &byte in c.encode_utf8(&mut utf8).as_bytes() {
            if encoded(byte) {
                out.push('%');
                out.push(char::from(HEX[usize::from(byte >> 4)]));
                out.push(char::from(HEX[usize::from(byte & 0xf)]));
            } else {
                out.push(char::from(byte));
            }
        }
    }
}

/// What one segment holding `%` or `;` hides: a dot segment, a separator or a control
/// character once decoded (up to [`DECODE_ROUNDS`] times) or stripped of its parameters.
fn segment_ambiguity(segment: &str) -> Option<Ambiguity> {
    let stem = |text: &str| text.split(';').next().unwrap_or_default().to_owned();
    if segment.contains(';') && dot_segment(&stem(segment)).is_some() {
        return Some(Ambiguity::EncodedDotSegment);
    }
    let mut decoded = Cow::Borrowed(segment);
    for _ in 0..DECODE_ROUNDS {
        let Some(once) = percent_decode(&decoded) else {
            break;
        };
        if once.contains(['/', '\\']) {
            return Some(Ambiguity::EncodedSeparator);
        }
        if once.bytes().any(is_control) {
            return Some(Ambiguity::ControlCharacter);
        }
        if matches!(stem(&once).as_str(), "." | "..") {
            return Some(Ambiguity::EncodedDotSegment);
        }
        decoded = Cow::Owned(once);
    }
    None
}

/// Decodes `%XX` escapes (malformed escapes kept literally, invalid UTF-8 replaced), or `None`
/// when there is nothing to decode.
pub(crate) fn percent_decode(text: &str) -> Option<String> {
    fn hex(digit: u8) -> Option<u8> {
        match digit {
            b'0'..=b'9' => Some(digit - b'0'),
            b'a'..=b'f' => Some(digit - b'a' + 10),
            b'A'..=b'F' => Some(digit - b'A' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut decoded_any = false;
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes[i..] {
            [b'%', high, low, ..] => hex(high).zip(hex(low)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match escaped {
            Some(byte) => {
                out.push(byte);
                decoded_any = true;
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    decoded_any.then(|| String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests;
