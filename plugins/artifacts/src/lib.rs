//! The guest plugins of `plugins/`, compiled to `wasm32-wasip2` components by this crate's
//! build script, for the integration tests and benches of the root package.
//!
//! Each plugin `plugins/<name>` gets a constant `<NAME>` holding the absolute path of its
//! component, an entry in [`PLUGINS`], and a line in [`foreach_plugin!`]. The tests call
//! `foreach_plugin!(assert_test_exists)`, so a plugin without a test of its own name fails
//! the test build.
//!
//! Build the same components by hand with:
//!
//! ```text
//! rustup target add wasm32-wasip2
//! cargo build --release --locked --target wasm32-wasip2 --manifest-path plugins/Cargo.toml
//! ```

include!(concat!(env!("OUT_DIR"), "/plugins.rs"));
