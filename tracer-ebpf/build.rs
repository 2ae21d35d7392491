//! The eBPF object links with `bpf-linker`, which cargo cannot see as a dependency: rebuild
//! when it changes, and say how to install it when it is missing.
fn main() {
    match which::which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(_) => {
            println!("cargo:warning=bpf-linker not found on PATH; run `cargo xtask setup`");
            std::process::exit(1);
        }
    }
}
