//! Every wait-hint parser on arbitrary text: never a panic, never a hint over the cap.
#![no_main]

use std::time::{Duration, SystemTime};

use ballast_classify::MAX_WAIT_HINT;
use ballast_classify::hint::{
    parse_go_duration, parse_message, parse_millis, parse_retry_after, parse_rfc3339_delay,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_072_000);
    for hint in [
        parse_retry_after(&text, now),
        parse_millis(&text),
        parse_go_duration(&text),
        parse_rfc3339_delay(&text, now),
        parse_message(&text),
    ]
    .into_iter()
    .flatten()
    {
        assert!(hint <= MAX_WAIT_HINT);
    }
});
