//! Reads arbitrary bytes as a streamed answer in each dialect: the first byte picks the
//! dialect, the second where the bytes are split. Must never panic, and the split reading
//! must tell what the whole one tells.
#![no_main]

use ballast_classify::stream::Reader;
use ballast_classify::{Dialect, StreamEnd};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let dialect = match data[0] % 4 {
        0 => Dialect::Chat,
        1 => Dialect::Responses,
        2 => Dialect::Messages,
        _ => Dialect::Gemini,
    };
    let bytes = &data[2..];
    let step = usize::from(data[1]).max(1);
    let mut whole = Reader::new(dialect);
    whole.feed(bytes);
    let mut split = Reader::new(dialect);
    for chunk in bytes.chunks(step) {
        split.feed(chunk);
    }
    let told = |reader: &Reader| {
        let summary = reader.summary(StreamEnd::Cut);
        (
            summary.usage,
            summary.content_bytes,
            summary.events,
            reader.is_finished(),
            reader.failed(),
        )
    };
    assert_eq!(told(&whole), told(&split));
});
