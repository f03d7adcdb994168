//! Price files from arbitrary text: a typed error or a table that prices without a panic.
#![no_main]

use ballast_cost::{PriceTable, Usage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut table = PriceTable::builtin();
    if table.merge_json(text).is_ok() {
        let usage = Usage {
            input_tokens: 1_000,
            output_tokens: 1_000,
            ..Usage::default()
        };
        let _ = table.cost(Some("grok-code-fast-1"), &usage);
        let _ = table.cost(None, &usage);
    }
});
