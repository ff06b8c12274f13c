//! The regular expressions of the document's formats ([`super::formats`], and a resource's
//! own), built from the validators' bounds. A pattern states the validator's rule exactly where
//! a regular expression can (scopes, role names, origins, client addresses), and otherwise a part
//! of it the validator always takes (URLs: absolute, with a registered name for a host; emails:
//! printable ASCII). Every validator's tests generate strings from its pattern (`strings`) and
//! check that it takes each one.
//!
//! Patterns use only what ECMA-262, Python's `re` and Rust's `regex` read alike (no lookaround),
//! anchored `^…$`.

use crate::access::MAX_ROLE_NAME_LEN;

/// The longest origin the format takes: a host of at most 253 characters after `http://`
/// (after `https://`, 252: a little short of what the server takes, never beyond).
pub const ORIGIN_MAX_LEN: usize = "http://".len() + 253;

/// A name a person gives ([`crate::keys::input::name`], a display name): no control
/// character (Unicode's `Cc`: U+0000–U+001F, U+007F–U+009F), and one character at least that
/// is not white space. Its length is the format's `minLength` / `maxLength`.
pub fn name_pattern() -> String {
    r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
        .to_owned()
}

/// A set of ASCII characters, written as a regular-expression class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Class([bool; 128]);

impl Class {
    /// The characters of `spec`: single characters and `a-z` ranges.
    fn of(spec: &str) -> Self {
        let mut set = [false; 128];
        let bytes = spec.as_bytes();
        let mut at = 0;
        while at < bytes.len() {
            if at + 2 < bytes.len() && bytes[at + 1] == b'-' {
                for byte in bytes[at]..=bytes[at + 2] {
                    set[usize::from(byte)] = true;
                }
                at += 3;
            } else {
                set[usize::from(bytes[at])] = true;
                at += 1;
            }
        }
        Class(set)
    }

    /// This set without the characters of `other`.
    fn without(self, other: Class) -> Self {
        let mut set = self.0;
        for (byte, present) in set.iter_mut().enumerate() {
            *present &= !other.0[byte];
        }
        Class(set)
    }

    /// This set's characters below `bound`.
    fn below(self, bound: u8) -> Self {
        let mut set = self.0;
        for present in set.iter_mut().skip(usize::from(bound)) {
            *present = false;
        }
        Class(set)
    }

    fn is_empty(self) -> bool {
        !self.0.contains(&true)
    }

    /// `[…]`, runs of three or more written as ranges; one character alone is written bare.
    fn render(self) -> String {
        let members: Vec<u8> = (0u8..128)
            .filter(|&byte| self.0[usize::from(byte)])
            .collect();
        if let [only] = members.as_slice() {
            return escape_bare(*only);
        }
        let mut out = String::from("[");
        let mut at = 0;
        while at < members.len() {
            let mut end = at;
            while end + 1 < members.len() && members[end + 1] == members[end] + 1 {
                end += 1;
            }
            if end - at >= 2 {
                out.push_str(&escape_in_class(members[at]));
                out.push('-');
                out.push_str(&escape_in_class(members[end]));
            } else {
                for &byte in &members[at..=end] {
                    out.push_str(&escape_in_class(byte));
                }
            }
            at = end + 1;
        }
        out.push(']');
        out
    }
}

fn escape_in_class(byte: u8) -> String {
    match byte {
        b'\\' | b']' | b'[' | b'^' | b'-' => format!("\\{}", char::from(byte)),
        _ => char::from(byte).to_string(),
    }
}

fn escape_bare(byte: u8) -> String {
    if b"\\^$.|?*+()[]{}".contains(&byte) {
        format!("\\{}", char::from(byte))
    } else {
        char::from(byte).to_string()
    }
}

/// `{lo,hi}` (nothing for exactly one; `{n}` when both are n).
fn repeat(class: Class, lo: usize, hi: usize) -> String {
    match (lo, hi) {
        (0, 0) => String::new(),
        (1, 1) => class.render(),
        (lo, hi) if lo == hi => format!("{}{{{lo}}}", class.render()),
        (lo, hi) => format!("{}{{{lo},{hi}}}", class.render()),
    }
}

/// A name of `min..=max` characters, the first from `first` and the rest from `rest`, that is
/// none of `words` (each given as the sets its characters may be, so that a word can be matched
/// without regard to case). The words' characters must be within the classes, and the sets of
/// two words at the same position either equal or disjoint.
fn name_except(words: &[Vec<Class>], first: Class, rest: Class, min: usize, max: usize) -> String {
    let words: Vec<&[Class]> = words.iter().map(Vec::as_slice).collect();
    format!(
        "(?:{})",
        names_after(&[], &words, first, rest, min, max).join("|")
    )
}

/// The alternatives of [`name_except`] for names starting with `prefix`, which starts some of
/// `words`.
fn names_after(
    prefix: &[Class],
    words: &[&[Class]],
    first: Class,
    rest: Class,
    min: usize,
    max: usize,
) -> Vec<String> {
    let at = prefix.len();
    let written: String = prefix.iter().map(|set| set.render()).collect();
    let mut alternatives = Vec::new();
    // The prefix alone, when it is a name and not one of the words.
    if at >= min.max(1) && !words.iter().any(|word| word.len() == at) {
        alternatives.push(written.clone());
    }
    if at >= max {
        return alternatives;
    }
    // The next character: one that continues a word (recursing), or any other, then anything.
    let mut next: Vec<Class> = Vec::new();
    for word in words.iter().filter(|word| word.len() > at) {
        if !next.contains(&word[at]) {
            next.push(word[at]);
        }
    }
    let mut other = if at == 0 { first } else { rest };
    for set in &next {
        other = other.without(*set);
    }
    if !other.is_empty() {
        let (lo, hi) = (min.saturating_sub(at + 1), max - at - 1);
        alternatives.push(format!(
            "{written}{}{}",
            other.render(),
            repeat(rest, lo, hi)
        ));
    }
    for set in next {
        let continuing: Vec<&[Class]> = words
            .iter()
            .copied()
            .filter(|word| word.len() > at && word[at] == set)
            .collect();
        let mut longer = prefix.to_vec();
        longer.push(set);
        alternatives.extend(names_after(&longer, &continuing, first, rest, min, max));
    }
    alternatives
}

/// The sets of `word`'s letters, either case.
fn any_case(word: &str) -> Vec<Class> {
    word.chars()
        .map(|letter| {
            Class::of(&format!(
                "{}{}",
                letter.to_ascii_lowercase(),
                letter.to_ascii_uppercase()
            ))
        })
        .collect()
}

/// The sets of `word`'s characters, exactly.
fn exactly(word: &str) -> Vec<Class> {
    word.chars().map(|c| Class::of(&c.to_string())).collect()
}

/// A scope: the grammar of [`keyplane_shared::Scope::parse`].
pub fn scope_pattern() -> String {
    use keyplane_shared::scope::MAX_NAME_LEN;
    let first = Class::of("a-z0-9");
    let rest = Class::of("a-z0-9._-");
    let name = format!("{}{}", first.render(), repeat(rest, 0, MAX_NAME_LEN - 1));
    let resource = name_except(&[exactly("admin")], first, rest, 1, MAX_NAME_LEN);
    format!(r"^(?:admin:full|{resource}:(?:{name}|\*))$")
}

/// A role name: the grammar of [`crate::access::RoleName::parse`] (the built-in names fit it).
pub fn role_name_pattern() -> String {
    format!("^[a-z][a-z0-9_-]{{0,{}}}$", MAX_ROLE_NAME_LEN - 1)
}

/// A client address [`crate::input::ip::ip`] takes: printable ASCII, not only spaces (with
/// the format's `maxLength`, at most 64 characters).
pub fn client_address_pattern() -> String {
    "^[ -~]*[!-~][ -~]*$".to_owned()
}

/// A list [`crate::input::ip::ip_list`] takes: 1 to 50 addresses of printable ASCII other than
/// `,`, each 1 to 64 characters once the spaces around it are dropped.
pub fn client_address_list_pattern() -> String {
    use crate::input::ip::{MAX_IP_BYTES, MAX_IP_LIST};
    let inner = Class::of(" -~").without(Class::of(","));
    let edge = inner.without(Class::of(" "));
    let address = format!(
        " *{edge}(?:{}{edge})? *",
        repeat(inner, 0, MAX_IP_BYTES - 2),
        edge = edge.render()
    );
    format!("^{address}(?:,{address}){{0,{}}}$", MAX_IP_LIST - 1)
}

/// A role whose scopes can change: the developer role or a custom one (a role name other than
/// `owner`, `admin` and `viewer`, which are fixed).
pub fn changeable_role_pattern() -> String {
    let first = Class::of("a-z");
    let rest = Class::of("a-z0-9_-");
    let fixed = ["owner", "admin", "viewer"].map(exactly);
    format!(
        "^{}$",
        name_except(&fixed, first, rest, 1, MAX_ROLE_NAME_LEN)
    )
}

/// A cursor of a webhook's attempts listing: `{millis}.{event id}.{attempt}`, as
/// [`crate::webhooks::views::parse_cursor`] reads it.
pub fn attempt_cursor_pattern() -> String {
    format!(
        r"^-?[0-9]{{1,18}}\.evt_{}\.[0-9]{{1,9}}$",
        id_digits_pattern()
    )
}

/// An email [`crate::people::email`] takes: printable ASCII, `local@domain`, the domain with
/// a dot and not starting with one.
pub fn email_pattern() -> String {
    let any = Class::of("!-~").without(Class::of("@"));
    let domain_first = any.without(Class::of("."));
    format!(
        r"^{}+@{}{}*\.{}*$",
        any.render(),
        domain_first.render(),
        any.render(),
        any.render()
    )
}

/// A DNS label: 1 to 63 letters, digits and `-`, not starting or ending with `-`.
const LABEL: &str = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
/// A registered name as a URL's host may be (RFC 3986 unreserved characters and
/// sub-delimiters, no percent-encoding).
const REG_NAME: &str = "[A-Za-z0-9._~!$&'()*+,;=\\-]+";
/// A port from 1 to 65535, without leading zeros.
const PORT: &str =
    "(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})";
/// A port from 1 to 65535 in at most five digits, leading zeros allowed (as
/// [`crate::portal::urls::origin`] reads one).
const PADDED_PORT: &str = "(?:0{0,4}[1-9]|0{0,3}[1-9][0-9]|0{0,2}[1-9][0-9]{2}|0?[1-9][0-9]{3}|\
                           6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4})";
/// What may follow the host: a path, a query and a fragment of RFC 3986 characters, `%` only
/// before two hex digits.
const PATH_QUERY_FRAGMENT: &str = "(?:/(?:[A-Za-z0-9._~!$&'()*+,;=:@/\\-]|%[0-9A-Fa-f]{2})*)?\
                                   (?:\\?(?:[A-Za-z0-9._~!$&'()*+,;=:@/?\\-]|%[0-9A-Fa-f]{2})*)?\
                                   (?:#(?:[A-Za-z0-9._~!$&'()*+,;=:@/?\\-]|%[0-9A-Fa-f]{2})*)?";

/// The schemes taken: `https`, and `http` with `allow_http`.
fn scheme(allow_http: bool) -> &'static str {
    if allow_http { "https?" } else { "https" }
}

/// An absolute URL with a registered name as its host: a part of what
/// [`crate::portal::urls::web_url`] takes (`http://` with `allow_http`).
pub fn web_url_pattern(allow_http: bool) -> String {
    let scheme = scheme(allow_http);
    format!(r"^{scheme}://{REG_NAME}(?::{PORT})?{PATH_QUERY_FRAGMENT}$")
}

/// A webhook URL: outside local development, as [`web_url_pattern`] but the host a DNS name
/// ending with a top-level label of letters that is not `localhost` (so never an address
/// literal, a `localhost` name or `*.localhost`); under it, any web URL.
pub fn webhook_url_pattern(local_dev: bool) -> String {
    if local_dev {
        return web_url_pattern(true);
    }
    let letters = Class::of("A-Za-z");
    let top = name_except(&[any_case("localhost")], letters, letters, 2, 63);
    format!(r"^https://(?:{LABEL}\.)+{top}(?::{PORT})?{PATH_QUERY_FRAGMENT}$")
}

/// An origin [`crate::portal::urls::origin`] takes: `https://host[:port]` (`http://` with
/// `allow_http`), host labels of letters, digits and `-` (with [`ORIGIN_MAX_LEN`], at most
/// 253 characters).
pub fn origin_pattern(allow_http: bool) -> String {
    let scheme = scheme(allow_http);
    format!(r"^{scheme}://{LABEL}(?:\.{LABEL})*(?::{PADDED_PORT})?$")
}

/// A full key with `prefix`: the shape [`keyplane_shared::ApiKey::parse`] checks before the
/// checksum (which no pattern can state).
pub fn full_key_pattern(prefix: &str) -> String {
    use keyplane_shared::key::BODY_LEN;
    format!("^{prefix}_(?:live|test)_[0-9A-Za-z]{{{BODY_LEN}}}$")
}

/// The 22 base62 digits of an id: at most `7n42DGM5Tflk9n8mt7Fhc7` (2^128 - 1), the largest
/// value [`keyplane_shared::ids`] reads.
pub fn id_digits_pattern() -> String {
    const LARGEST: &str = "7n42DGM5Tflk9n8mt7Fhc7";
    let digit = Class::of("0-9A-Za-z");
    let mut alternatives: Vec<String> = LARGEST
        .bytes()
        .enumerate()
        .filter(|&(_, bound)| !digit.below(bound).is_empty())
        .map(|(at, bound)| {
            let rest = LARGEST.len() - at - 1;
            format!(
                "{}{}{}",
                &LARGEST[..at],
                digit.below(bound).render(),
                repeat(digit, rest, rest)
            )
        })
        .collect();
    alternatives.push(LARGEST.to_owned());
    format!("(?:{})", alternatives.join("|"))
}

/// Strings of `pattern`, for property tests (anchors dropped: the generator takes none).
#[cfg(test)]
pub(crate) fn strings(pattern: &str) -> proptest::string::RegexGeneratorStrategy<String> {
    let inner = pattern
        .strip_prefix('^')
        .and_then(|rest| rest.strip_suffix('$'))
        .unwrap_or(pattern);
    proptest::string::string_regex(inner).expect("a pattern the generator reads")
}

/// The property tests' settings: 2,000 cases each, and room for the strings past a format's
/// longest length, which the tests skip.
#[cfg(test)]
pub(crate) fn property_config() -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        cases: 2000,
        max_global_rejects: 100_000,
        ..proptest::test_runner::Config::default()
    }
}

#[cfg(test)]
mod tests;
