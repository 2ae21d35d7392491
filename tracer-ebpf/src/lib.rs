//! Host-side stub: the real programs build for bpfel-unknown-none (see src/main.rs).
#![no_std]
