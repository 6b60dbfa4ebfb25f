//! Fuzz target `ops`: glue over `syncore_fuzz::sequences::run` (see there for input and
//! oracle).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(finding) = syncore_fuzz::sequences::run(data) {
        panic!("{finding}");
    }
});
