//! Reading one top-level value out of a JSON body without parsing the rest.
//!
//! Layers need a field or two of bodies they otherwise pass through untouched: the request's
//! `model`, the response's `usage`. A full parse of a 2 KB body costs microseconds; this
//! structural walk skips string contents with `memchr` and hands back the raw bytes of the
//! one value asked for, to parse on its own.

/// The JSON unsigned integer `text` (digits only, at most 20) when it fits a `u64`; `None`
/// for anything else (a sign, a fraction, an exponent, `null`, an overflow). How a token
/// count is read, by the classifier's pass and by the cost logger's walk alike.
///
/// ```
/// use ballast_classify::json::unsigned;
///
/// assert_eq!(unsigned(b"812"), Some(812));
/// assert_eq!(unsigned(b"-1"), None);
/// assert_eq!(unsigned(b"18446744073709551616"), None);
/// ```
pub fn unsigned(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 20 {
        return None;
    }
    text.iter().try_fold(0u64, |n, &byte| {
        let digit = byte.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// The raw bytes of the value of `key` in the top-level JSON object `body`, or `None` when
/// the body is not an object, lacks the key, or ends early.
///
/// ```
/// let body = br#"{"id":"x","usage":{"prompt_tokens":12},"model":"m"}"#;
/// assert_eq!(ballast_classify::json::top_level(body, "usage"), Some(&br#"{"prompt_tokens":12}"#[..]));
/// assert_eq!(ballast_classify::json::top_level(body, "model"), Some(&br#""m""#[..]));
/// assert_eq!(ballast_classify::json::top_level(body, "missing"), None);
/// ```
pub fn top_level<'a>(body: &'a [u8], key: &str) -> Option<&'a [u8]> {
    members(body)
        .find_map(|member| match member {
            Ok((name, value)) => (name == key.as_bytes()).then_some(Some(value)),
            Err(Malformed) => Some(None),
        })
        .flatten()
}

/// The members of the JSON object `object`, in order: each key's raw text (between its
/// quotes, escapes as written) and the raw bytes of its value. Values are skipped, not
/// checked; a body that is not an object, or ends early, yields one [`Malformed`] and stops.
///
/// ```
/// use ballast_classify::json::members;
///
/// let object = br#"{"prompt_tokens":12, "details":{"cached_tokens":3}}"#;
/// let found: Vec<_> = members(object).collect::<Result<_, _>>().unwrap();
/// assert_eq!(found, [(&b"prompt_tokens"[..], &b"12"[..]), (&b"details"[..], &br#"{"cached_tokens":3}"#[..])]);
/// assert!(members(br#"{"cut":"#).any(|m| m.is_err()));
/// ```
pub fn members(object: &[u8]) -> Members<'_> {
    let start = skip_ws(object, 0);
    let state = if object.get(start) == Some(&b'{') {
        State::Open(start + 1)
    } else {
        State::Broken
    };
    Members {
        body: object,
        state,
    }
}

/// The iterator of [`members`].
#[derive(Debug, Clone)]
pub struct Members<'a> {
    body: &'a [u8],
    state: State,
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Inside the object, at this index.
    Open(usize),
    /// Not an object, or cut short: one `Malformed` to yield.
    Broken,
    /// Closed, or the error yielded.
    Done,
}

/// A body that is not a complete JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a complete JSON object")
    }
}

impl std::error::Error for Malformed {}

impl<'a> Iterator for Members<'a> {
    type Item = Result<(&'a [u8], &'a [u8]), Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.state {
            State::Done => None,
            State::Broken => {
                self.state = State::Done;
                Some(Err(Malformed))
            }
            State::Open(at) => match self.member(at) {
                Ok(Some((name, value, next))) => {
                    self.state = State::Open(next);
                    Some(Ok((name, value)))
                }
                Ok(None) => {
                    self.state = State::Done;
                    None
                }
                Err(Malformed) => {
                    self.state = State::Done;
                    Some(Err(Malformed))
                }
            },
        }
    }
}

impl<'a> Members<'a> {
    /// The member at or after `i`: key, value and the index past the value; `None` at the
    /// closing brace.
    #[allow(clippy::type_complexity)]
    fn member(&self, mut i: usize) -> Result<Option<(&'a [u8], &'a [u8], usize)>, Malformed> {
        let body = self.body;
        loop {
            i = skip_ws(body, i);
            match body.get(i).ok_or(Malformed)? {
                b'}' => return Ok(None),
                b',' => i += 1,
                b'"' => break,
                _ => return Err(Malformed),
            }
        }
        let key_end = string_end(body, i).ok_or(Malformed)?;
        let name = &body[i + 1..key_end];
        i = skip_ws(body, key_end + 1);
        if body.get(i) != Some(&b':') {
            return Err(Malformed);
        }
        let start = skip_ws(body, i + 1);
        let end = value_end(body, start).ok_or(Malformed)?;
        Ok(Some((name, &body[start..end], end)))
    }
}

fn skip_ws(body: &[u8], mut i: usize) -> usize {
    while body.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

/// The index of the quote closing the string that opens at `start`, checked as a JSON
/// parser checks it: every escape one of `\" \\ \/ \b \f \n \r \t` or `\u` and four hex
/// digits, no raw control character (below U+0020). `None` if it is not a valid string.
///
/// ```
/// use ballast_classify::json::string_end;
///
/// let body = br#"{"key\"s":1}"#;
/// assert_eq!(string_end(body, 1), Some(8));
/// assert_eq!(string_end(b"\"cut", 0), None);
/// ```
// Inlined into the classifier's scan, which calls it for every key and string value:
// `benches/instructions.sh` counted the call's entry and exit at about 20 instructions a
// string, 350 a 2 KB answer (the facade 34 903 -> 34 377 with it).
#[inline(always)]
pub fn string_end(body: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    loop {
        // Keys and short values eight bytes at a time to the next quote, backslash or
        // control character; past 32 bytes a vector search for the quote or backslash and
        // a vectorised check of the bytes skipped (`benches/classify.rs`: the word loop
        // alone over a 2 KB answer doubled the verdict's time).
        let stop = if i <= start + 32
            && let Some(chunk) = body.get(i..i + 8)
        {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            let found = stop_byte(u64::from_le_bytes(word));
            if found == 0 {
                i += 8;
                continue;
            }
            i + (found.trailing_zeros() / 8) as usize
        } else {
            let rest = body.get(i..)?;
            let at = memchr::memchr2(b'"', b'\\', rest)?;
            if has_control(&rest[..at]) {
                return None;
            }
            i + at
        };
        i = stop;
        match body[i] {
            b'"' => return Some(i),
            b'\\' => {
                i += match *body.get(i + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => 2,
                    b'u' if body.get(i + 2..i + 6)?.iter().all(u8::is_ascii_hexdigit) => 6,
                    _ => return None,
                };
            }
            _ => return None,
        }
    }
}

/// Whether `bytes` holds a byte below 0x20: their minimum, without an early exit, which the
/// compiler vectorises (measured faster than a per-block `any`).
fn has_control(bytes: &[u8]) -> bool {
    bytes.iter().fold(u8::MAX, |least, &b| least.min(b)) < 0x20
}

/// The high bit of each byte of `word` (little-endian) that may be a `"`, a `\` or a byte
/// below 0x20; the lowest one set always is.
fn stop_byte(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGH;
    below(word ^ (ONES * u64::from(b'"')), 1)
        | below(word ^ (ONES * u64::from(b'\\')), 1)
        | below(word, 0x20)
}

/// The index just past the value that starts at `start`.
fn value_end(body: &[u8], start: usize) -> Option<usize> {
    match body.get(start)? {
        b'"' => string_end(body, start).map(|end| end + 1),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = start;
            loop {
                match body.get(i)? {
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    b'"' => i = string_end(body, i)?,
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let len = body[start..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']') || b.is_ascii_whitespace())
                .unwrap_or(body.len() - start);
            (len > 0).then_some(start + len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn values_of_every_kind() {
        let body = br#" { "a" : 1 , "s":"x\"}y", "o":{"k":[1,{"z":"}"}]}, "n":null, "t":true } "#;
        assert_eq!(top_level(body, "a"), Some(&b"1"[..]));
        assert_eq!(top_level(body, "s"), Some(&br#""x\"}y""#[..]));
        assert_eq!(top_level(body, "o"), Some(&br#"{"k":[1,{"z":"}"}]}"#[..]));
        assert_eq!(top_level(body, "n"), Some(&b"null"[..]));
        assert_eq!(top_level(body, "t"), Some(&b"true"[..]));
        assert_eq!(top_level(body, "k"), None, "not top level");
        assert_eq!(top_level(b"[1]", "a"), None);
        assert_eq!(top_level(br#"{"a":{"b":1"#, "a"), None);
        assert_eq!(top_level(br#"{"a""#, "a"), None);
    }

    /// The closing quote by the plainest loop there is, checking escapes and control
    /// characters as JSON does.
    fn string_end_by_bytes(body: &[u8], start: usize) -> Option<usize> {
        let mut i = start + 1;
        while let Some(&byte) = body.get(i) {
            match byte {
                b'"' => return Some(i),
                b'\\' => match *body.get(i + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                    b'u' if body.get(i + 2..i + 6)?.iter().all(u8::is_ascii_hexdigit) => i += 6,
                    _ => return None,
                },
                0..0x20 => return None,
                _ => i += 1,
            }
        }
        None
    }

    proptest! {
        /// Eight bytes at a time or by `memchr`, the closing quote found (or the string
        /// refused) is what a byte loop finds, escapes and control characters and all,
        /// wherever the string ends.
        #[test]
        fn string_end_agrees_with_a_byte_loop(
            body in prop::collection::vec(prop_oneof![Just(b'"'), Just(b'\\'), Just(b'a'), Just(b'u'), Just(b'0'), any::<u8>()], 0..80),
        ) {
            for start in 0..body.len() {
                prop_assert_eq!(string_end(&body, start), string_end_by_bytes(&body, start), "from {}", start);
            }
        }

        /// On any object serde can write, the slice found parses to the value serde put there.
        #[test]
        fn agrees_with_serde(map in prop::collection::btree_map("[a-z\"\\\\ ]{0,6}", any::<(i32, String, Option<bool>)>(), 0..6)) {
            let object: serde_json::Map<String, serde_json::Value> = map
                .into_iter()
                .map(|(k, v)| (k, serde_json::to_value(v).unwrap()))
                .collect();
            let body = serde_json::to_vec(&object).unwrap();
            for (key, value) in &object {
                let raw = top_level(&body, key);
                // Keys with escapes are compared raw, so only plain keys are found.
                if key.contains(['"', '\\']) {
                    continue;
                }
                let parsed: serde_json::Value = serde_json::from_slice(raw.unwrap()).unwrap();
                prop_assert_eq!(&parsed, value);
            }
        }

        #[test]
        fn never_panics(body in prop::collection::vec(any::<u8>(), 0..256), key in "[a-z]{0,4}") {
            let _ = top_level(&body, &key);
        }
    }
}
