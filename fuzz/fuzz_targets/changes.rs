//! Fuzz target `changes`: glue over `syncore_fuzz::changes::run` (see there for input and oracle).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(finding) = syncore_fuzz::changes::run(data) {
        panic!("{finding}");
    }
});
