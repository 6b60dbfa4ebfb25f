//! Fuzz target `schema`: glue over `syncore_fuzz::schema::run` (see there for input and oracle).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(finding) = syncore_fuzz::schema::run(data) {
        panic!("{finding}");
    }
});
