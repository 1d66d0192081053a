#![no_main]
//! See `slate_fuzz::cdc` for the input layout and what is checked.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    slate_fuzz::cdc(data);
});
