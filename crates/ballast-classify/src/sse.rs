//! Server-sent event framing: bytes in any chunks, events out, by the WHATWG algorithm
//! ("interpreting an event stream"): lines end in LF, CRLF or CR; `data` lines join with
//! LF; `event` names the type; comments and other fields are skipped; a blank line
//! dispatches an event that has data; a leading BOM is dropped once; a block left without
//! its blank line at the end is discarded.
//!
//! Written here, not taken from a crate: `sse-parse` (the reference this is tested
//! against, in `tests/stream.rs`) allocates an `Event` with owned strings and queues it for
//! every event, and `benches/stream.rs` measured that path at 3 allocations per event. This
//! framer keeps its buffers across events and hands each event out by reference: no
//! allocation per event once its buffers have grown to the stream's longest event.

use memchr::memchr2;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Frames one stream.
#[derive(Debug, Default)]
pub(crate) struct Framer {
    /// A line not yet ended (kept across chunks).
    line: Vec<u8>,
    /// The block's event type.
    event: String,
    /// The block's data lines, each followed by LF.
    data: String,
    has_data: bool,
    /// The last line ended with CR at the end of a chunk: an LF first in the next is its
    /// CRLF.
    after_cr: bool,
    /// Bytes seen before the BOM could be decided (fewer than its three).
    head: Vec<u8>,
    started: bool,
    /// The block is over the cap: dropped until its blank line.
    dropping: bool,
    max: usize,
    overflows: u64,
    /// Bytes of the dropped blocks (an upper bound of the content they carried).
    overflow_bytes: u64,
}

impl Framer {
    /// A framer that drops blocks (event and data) longer than `max` bytes.
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max,
            ..Self::default()
        }
    }

    /// Blocks dropped for their length.
    pub(crate) fn overflows(&self) -> u64 {
        self.overflows
    }

    /// The bytes those blocks had, line ends not counted.
    pub(crate) fn overflow_bytes(&self) -> u64 {
        self.overflow_bytes
    }

    /// Reads `bytes`, calling `on(event_type, data)` for each event they complete.
    pub(crate) fn feed(&mut self, bytes: &[u8], on: &mut impl FnMut(&str, &str)) {
        if !self.started {
            self.head.extend_from_slice(bytes);
            let decided = self.head.len() >= BOM.len() || !BOM.starts_with(&self.head);
            if !decided {
                return;
            }
            self.started = true;
            let head = std::mem::take(&mut self.head);
            let rest = head.strip_prefix(BOM).unwrap_or(&head);
            self.lines(rest, on);
            return;
        }
        self.lines(bytes, on);
    }

    fn lines(&mut self, mut bytes: &[u8], on: &mut impl FnMut(&str, &str)) {
        if self.after_cr && !bytes.is_empty() {
            self.after_cr = false;
            if bytes[0] == b'\n' {
                bytes = &bytes[1..];
            }
        }
        while let Some(end) = memchr2(b'\n', b'\r', bytes) {
            let cr = bytes[end] == b'\r';
            if self.line.is_empty() {
                self.field(&bytes[..end], on);
            } else {
                self.grow(&bytes[..end]);
                let line = std::mem::take(&mut self.line);
                self.field(&line, on);
                self.line = line;
                self.line.clear();
            }
            bytes = &bytes[end + 1..];
            if cr {
                match bytes.first() {
                    Some(b'\n') => bytes = &bytes[1..],
                    None => self.after_cr = true,
                    Some(_) => {}
                }
            }
        }
        self.grow(bytes);
    }

    /// Adds to the unended line, within the cap.
    fn grow(&mut self, bytes: &[u8]) {
        if self.line.len() + bytes.len() + self.data.len() + self.event.len() > self.max {
            self.drop_block();
        }
        if self.dropping {
            self.overflow_bytes += bytes.len() as u64;
            return;
        }
        self.line.extend_from_slice(bytes);
    }

    fn drop_block(&mut self) {
        if !self.dropping {
            self.overflows += 1;
            self.overflow_bytes += (self.line.len() + self.data.len() + self.event.len()) as u64;
        }
        self.dropping = true;
        self.line.clear();
        self.data.clear();
        self.event.clear();
        self.has_data = false;
    }

    /// One whole line.
    fn field(&mut self, line: &[u8], on: &mut impl FnMut(&str, &str)) {
        if line.is_empty() {
            if self.has_data && !self.dropping {
                let data = self.data.strip_suffix('\n').unwrap_or(&self.data);
                on(&self.event, data);
            }
            self.data.clear();
            self.event.clear();
            self.has_data = false;
            self.dropping = false;
            return;
        }
        if self.dropping {
            self.overflow_bytes += line.len() as u64;
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (name, value) = match memchr::memchr(b':', line) {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &line[line.len()..]),
        };
        match name {
            b"event" => {
                self.event.clear();
                push_lossy(&mut self.event, value);
            }
            b"data" => {
                push_lossy(&mut self.data, value);
                self.data.push('\n');
                self.has_data = true;
            }
            _ => {}
        }
        if self.data.len() + self.event.len() > self.max {
            self.drop_block();
        }
    }

    /// The end of the stream: a block without its blank line is discarded.
    pub(crate) fn finish(&mut self) {
        self.line.clear();
        self.data.clear();
        self.event.clear();
        self.has_data = false;
        self.head.clear();
    }
}

fn push_lossy(into: &mut String, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => into.push_str(text),
        Err(_) => into.push_str(&String::from_utf8_lossy(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(chunks: &[&[u8]]) -> Vec<(String, String)> {
        let mut framer = Framer::new(1 << 20);
        let mut out = Vec::new();
        for chunk in chunks {
            framer.feed(chunk, &mut |event, data| {
                out.push((event.to_owned(), data.to_owned()));
            });
        }
        framer.finish();
        out
    }

    #[test]
    fn lines_fields_and_blank_lines() {
        let got = frame(&[
            b"\xEF\xBB",
            b"\xBFdata: a\r",
            b"\ndata:b\r\r: note\nevent: error\nid: 7\ndata\n\n",
            b"data: left without its blank line",
        ]);
        assert_eq!(
            got,
            [
                (String::new(), "a\nb".to_owned()),
                ("error".to_owned(), String::new())
            ]
        );
    }

    #[test]
    fn a_block_over_the_cap_is_dropped_to_its_blank_line() {
        let mut framer = Framer::new(16);
        let mut out = Vec::new();
        framer.feed(
            b"data: 0123456789abcdefghij\ndata: more\n\ndata: ok\n\n",
            &mut |_, data| out.push(data.to_owned()),
        );
        assert_eq!(out, ["ok"]);
        assert_eq!(framer.overflows(), 1);
        // The first line's value as it was held (20 bytes and its LF), then "data: more"
        // as it came: no byte of the block's content is missed.
        assert_eq!(framer.overflow_bytes(), 21 + 10);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Against `sse-parse`, the crate this stands in for: the same events (type and
        /// data) from any bytes, split anywhere.
        #[test]
        fn frames_as_sse_parse_does(
            bytes in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(b"\r\n: \xEF\xBB\xBFadtenvsiry".to_vec()),
                    proptest::prelude::any::<u8>(),
                ],
                0..300,
            ),
            cuts in proptest::collection::vec(proptest::prelude::any::<proptest::sample::Index>(), 0..12),
        ) {
            // Field names and line breaks, often: the grammar gets exercised.
            let mut text = bytes.clone();
            for (i, word) in [&b"data"[..], b"event", b"data: x", b"\n\n"].iter().enumerate() {
                if let Some(cut) = cuts.get(i) {
                    let at = cut.index(text.len() + 1);
                    text.splice(at..at, word.iter().copied());
                }
            }
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(text.len() + 1)).collect();
            points.sort_unstable();
            let mut chunks = Vec::new();
            let mut last = 0;
            for point in points.into_iter().chain([text.len()]) {
                chunks.push(&text[last..point.max(last)]);
                last = point.max(last);
            }
            let ours = frame(&chunks);
            let mut reference = sse_parse::SseParser::new();
            for chunk in &chunks {
                reference.feed(chunk);
            }
            reference.finish();
            let mut theirs = Vec::new();
            while let Some(event) = reference.next_event() {
                let kind = if event.event == "message" { String::new() } else { event.event };
                theirs.push((kind, event.data));
            }
            let ours: Vec<_> = ours
                .into_iter()
                .map(|(kind, data)| (if kind == "message" { String::new() } else { kind }, data))
                .collect();
            proptest::prop_assert_eq!(ours, theirs);
        }
    }
}
