#![no_main]
//! See `slate_fuzz::avro_framing` for the input layout and what is checked.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    slate_fuzz::avro_framing(data);
});
