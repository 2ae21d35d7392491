//! lockscope-profile: the half of lockscope that needs no kernel. The profile model and its
//! versioned file (`profile`), grouping, classifying and explaining its rows (`analyze`), the
//! report formats (`render`), and the pure knowledge of runtimes and maps those use
//! (`knowledge`). It builds and tests on stable Rust, without bpf-linker or root; the
//! `lockscope` binary (tracer-user) records profiles and depends on it, so nothing here can
//! reach the tracer.
//!
//! Layering, checked by `cargo xtask cycles`: `profile` names no other folder; `knowledge`
//! uses `profile`; `analyze` uses both; `render` uses all three.
pub mod analyze;
#[cfg(test)]
mod fuzz;
pub mod knowledge;
pub mod profile;
pub mod render;
