//! One cfg for the hub's code that only a backend uses.
//!
//! The hub core keeps, beside its history, what a backend that feeds topics
//! from an outside log needs (each entry's id in that log, where the log
//! broke). Without such a backend that code is unused, so it is compiled
//! only with one: `hub_log` is set when a feature of a backend is on. This
//! is the one place that lists them; a new backend adds its feature here.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-check-cfg=cfg(hub_log)");
    let backends = ["CARGO_FEATURE_REDIS"];
    if backends
        .iter()
        .any(|feature| std::env::var_os(feature).is_some())
    {
        println!("cargo:rustc-cfg=hub_log");
    }
}
