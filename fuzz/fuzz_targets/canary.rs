//! Fuzz target `canary`: glue over `syncore_fuzz::canary::run` (see there for input and oracle).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(finding) = syncore_fuzz::canary::run(data) {
        panic!("{finding}");
    }
});
