//! testbed: real programs that lockscope's root tests (tracer-user, as a dev-dependency) and
//! benchmarks (xtask) both start, so the two launch them one way. No dependencies; errors are
//! one-line strings the callers wrap.
pub mod mariadb;
