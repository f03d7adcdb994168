//! A validating walk over a JSON document that hands back the top-level object's members as
//! slices, and skips everything else at a few instructions a byte.
//!
//! Written by hand, not with `serde_json`, because a measurement said so: skipping the
//! `messages` of a 32 KB chat request with `serde_json`'s `IgnoredAny` cost about 265 000
//! instructions (its per-string machinery dominates on many short strings); this walk
//! checks strings eight bytes at a time. It accepts exactly what `serde_json::Value`
//! accepts (RFC 8259, paired `\u` surrogates, numbers that fit an `f64`, nesting up to 127),
//! property-tested against it (`tests/facts.rs`); the values the facts need are then read
//! with `serde_json` from their small slices.

/// How deep containers may nest: `serde_json`'s limit.
const MAX_DEPTH: usize = 127;

/// What the walk found.
pub(crate) enum Document {
    /// A top-level object; its members were handed to the callback.
    Object,
    /// Valid JSON that is not an object.
    Other,
}

/// A member's name (unescaped) and the raw text of its value.
type Member<'m, 'a> = &'m mut dyn FnMut(&str, &'a str);

/// Walks `text`. For a top-level object, calls `member` with each member's name (unescaped)
/// and the raw slice of its value, in order. `None` when the document is not valid JSON
/// (the callback may have been called for members before the fault).
pub(crate) fn members<'a>(
    text: &'a str,
    mut member: impl FnMut(&str, &'a str),
) -> Option<Document> {
    let mut scan = Scan { text, at: 0 };
    scan.whitespace();
    let document = if scan.peek() == Some(b'{') {
        scan.object(0, Some(&mut member))?;
        Document::Object
    } else {
        scan.value(0)?;
        Document::Other
    };
    scan.whitespace();
    (scan.at == text.len()).then_some(document)
}

/// The raw value of the last top-level member named `name` (the one a parser keeps), when
/// `text` is a valid JSON object that has one.
pub(crate) fn last_member<'a>(text: &'a str, name: &str) -> Option<&'a [u8]> {
    let mut last: Option<&'a str> = None;
    members(text, |key, value| {
        if key == name {
            last = Some(value);
        }
    })?;
    last.map(str::as_bytes)
}

struct Scan<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Scan<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.at += 1;
        Some(byte)
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.next()? == byte).then_some(())
    }

    fn whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// One value, `depth` containers deep.
    fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' | b'[' if depth >= MAX_DEPTH => None,
            b'{' => self.object(depth, None),
            b'[' => {
                self.at += 1;
                self.whitespace();
                if self.peek() == Some(b']') {
                    self.at += 1;
                    return Some(());
                }
                loop {
                    self.whitespace();
                    self.value(depth + 1)?;
                    self.whitespace();
                    match self.next()? {
                        b',' => continue,
                        b']' => return Some(()),
                        _ => return None,
                    }
                }
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// An object, `depth` containers deep; each member goes to `member` when there is one.
    fn object(&mut self, depth: usize, mut member: Option<Member<'_, 'a>>) -> Option<()> {
        self.expect(b'{')?;
        self.whitespace();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Some(());
        }
        loop {
            self.whitespace();
            let (start, end, escaped) = self.string()?;
            self.whitespace();
            self.expect(b':')?;
            self.whitespace();
            let value_start = self.at;
            self.value(depth + 1)?;
            if let Some(member) = member.as_mut() {
                let value = &self.text[value_start..self.at];
                if escaped {
                    // Rare: names with escapes are unescaped by the parser itself.
                    let name: String = serde_json::from_str(&self.text[start - 1..=end]).ok()?;
                    member(&name, value);
                } else {
                    member(&self.text[start..end], value);
                }
            }
            self.whitespace();
            match self.next()? {
                b',' => continue,
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at + word.len();
        (self.bytes().get(self.at..end)? == word).then(|| self.at = end)
    }

    /// A number as RFC 8259 writes it, whose value fits an `f64` (`serde_json` refuses
    /// `1e400`).
    fn number(&mut self) -> Option<()> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        let integer_end = self.at;
        let mut float = false;
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.digit()?;
            self.digits();
            float = true;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            self.digit()?;
            self.digits();
            float = true;
        }
        // Integers of up to 19 digits fit `u64`/`i64`; longer ones and floats are read as
        // `f64`, which must be finite.
        if float || integer_end - start > 19 {
            let text = &self.text[start..self.at];
            if !text.parse::<f64>().ok()?.is_finite() {
                return None;
            }
        }
        Some(())
    }

    fn digit(&mut self) -> Option<()> {
        self.next()?.is_ascii_digit().then_some(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
    }

    /// A string; returns where its contents start and end, and whether it has escapes.
    #[inline(always)]
    fn string(&mut self) -> Option<(usize, usize, bool)> {
        self.expect(b'"')?;
        let start = self.at;
        let mut escaped = false;
        loop {
            self.at += plain_run(&self.bytes()[self.at..]);
            match self.next()? {
                b'"' => return Some((start, self.at - 1, escaped)),
                b'\\' => {
                    escaped = true;
                    self.escape()?;
                }
                // A control character: not allowed in a JSON string.
                _ => return None,
            }
        }
    }

    /// One escape after its backslash; `\u` surrogates must come in pairs.
    fn escape(&mut self) -> Option<()> {
        match self.next()? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(()),
            b'u' => {
                let unit = self.hex4()?;
                if (0xDC00..=0xDFFF).contains(&unit) {
                    return None;
                }
                if (0xD800..=0xDBFF).contains(&unit) {
                    self.expect(b'\\')?;
                    self.expect(b'u')?;
                    let low = self.hex4()?;
                    if !(0xDC00..=0xDFFF).contains(&low) {
                        return None;
                    }
                }
                Some(())
            }
            _ => None,
        }
    }

    fn hex4(&mut self) -> Option<u16> {
        let digits = self.bytes().get(self.at..self.at + 4)?;
        if !digits.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        let text = &self.text[self.at..self.at + 4];
        self.at += 4;
        u16::from_str_radix(text, 16).ok()
    }
}

/// How many bytes from the start of `bytes` are plain string content: not a quote, a
/// backslash or a control character. Eight bytes at a time (the classic "has a zero byte"
/// test on each condition; only the lowest flagged byte is exact, and only it is used).
/// Measured against `memchr2` plus a control-character check: strings in chat requests
/// are short, and the vectorised search's set-up cost more than it saved (365 000 against
/// 296 000 instructions for a 32 KB request).
#[inline(always)]
fn plain_run(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut at = 0;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let quote = word ^ (ONES * u64::from(b'"'));
        let backslash = word ^ (ONES * u64::from(b'\\'));
        let flagged = ((quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (word.wrapping_sub(ONES * 0x20) & !word))
            & HIGHS;
        if flagged != 0 {
            return at + (flagged.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    at + bytes[at..]
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .unwrap_or(bytes.len() - at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn valid(text: &str) -> bool {
        members(text, |_, _| {}).is_some()
    }

    #[test]
    fn accepts_what_a_parser_accepts_and_nothing_else() {
        for text in [
            r#"{"a":[1,-0.5e+3,true,false,null,{"b":"\u00e9\ud83d\ude00\n"}]}"#,
            " [ ] ",
            "\"x\"",
            "0",
        ] {
            assert!(valid(text), "{text}");
            assert!(serde_json::from_str::<serde_json::Value>(text).is_ok());
        }
        for text in [
            r#"{"a" 1 2}"#,
            "{,,}",
            "[01]",
            "[1.]",
            "[tru]",
            r#"["\ud800"]"#,
            r#"["\udc00"]"#,
            "[1e400]",
            "\"a\u{1}\"",
            "{\"a\":1,}",
            "[1] x",
            "",
        ] {
            assert!(!valid(text), "{text}");
            assert!(
                serde_json::from_str::<serde_json::Value>(text).is_err(),
                "{text}"
            );
        }
        for (depth, ok) in [(127, true), (128, false)] {
            let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            assert_eq!(valid(&text), ok, "{depth} deep");
            assert_eq!(serde_json::from_str::<serde_json::Value>(&text).is_ok(), ok);
        }
    }

    #[test]
    fn members_come_as_names_and_slices() {
        let mut seen = Vec::new();
        let body = r#"{ "model" : "m", "mod\u0065l":7, "x":{"y":[1]} }"#;
        members(body, |name, value| {
            seen.push((name.to_owned(), value.as_bytes().to_vec()))
        });
        assert_eq!(
            seen,
            [
                ("model".to_owned(), b"\"m\"".to_vec()),
                ("model".to_owned(), b"7".to_vec()),
                ("x".to_owned(), br#"{"y":[1]}"#.to_vec()),
            ]
        );
    }

    #[test]
    fn the_last_member_of_a_name_is_the_one_found() {
        let text = r#"{"model":"a","x":{"model":"inner"},"model":"b"}"#;
        assert_eq!(last_member(text, "model"), Some(&br#""b""#[..]));
        assert_eq!(last_member(text, "y"), None);
        assert_eq!(
            last_member(r#"{"model":"a""#, "model"),
            None,
            "not valid JSON"
        );
    }

    proptest! {
        #[test]
        fn plain_runs_stop_at_the_first_special_byte(bytes in prop::collection::vec(any::<u8>(), 0..40)) {
            let want = bytes
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                .unwrap_or(bytes.len());
            prop_assert_eq!(plain_run(&bytes), want);
        }
    }
}
