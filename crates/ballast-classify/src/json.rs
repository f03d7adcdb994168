//! Reading one top-level value out of a JSON body without parsing the rest.
//!
//! Layers need a field or two of bodies they otherwise pass through untouched: the request's
//! `model`, the response's `usage`. A full parse of a 2 KB body costs microseconds; this
//! structural walk skips string contents with `memchr` and hands back the raw bytes of the
//! one value asked for, to parse on its own.

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
    let mut i = skip_ws(body, 0);
    if body.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i = skip_ws(body, i);
        match body.get(i)? {
            b'}' => return None,
            b',' => {
                i += 1;
                continue;
            }
            b'"' => {}
            _ => return None,
        }
        let key_end = string_end(body, i)?;
        let name = &body[i + 1..key_end];
        i = skip_ws(body, key_end + 1);
        if body.get(i) != Some(&b':') {
            return None;
        }
        let start = skip_ws(body, i + 1);
        let end = value_end(body, start)?;
        if name == key.as_bytes() {
            return Some(&body[start..end]);
        }
        i = end;
    }
}

fn skip_ws(body: &[u8], mut i: usize) -> usize {
    while body.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

/// The index of the quote closing the string that opens at `start`.
fn string_end(body: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    loop {
        let rest = body.get(i..)?;
        match memchr::memchr2(b'"', b'\\', rest)? {
            j if rest[j] == b'\\' => i += j + 2,
            j => return Some(i + j),
        }
    }
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

    proptest! {
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
