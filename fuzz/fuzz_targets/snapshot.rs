//! Fuzz target `snapshot`: glue over `syncore_fuzz::snapshot::run` (see there for input and oracle).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(finding) = syncore_fuzz::snapshot::run(data) {
        panic!("{finding}");
    }
});
