//! Fuzz target `outcomes`: glue over `syncore_fuzz::outcomes::run` (see there for input and oracle).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(finding) = syncore_fuzz::outcomes::run(data) {
        panic!("{finding}");
    }
});
