//! probesafety: a uprobe rewrites the first byte of an instruction in a live process, so one
//! placed anywhere else corrupts it. A goroutine probe goes only where the bytes on disk say
//! an instruction of the function it names begins: the function's entry must open as the Go
//! compiler opens functions, and the point must be one of the instructions decoded one after
//! another from there. A wrongly based symbol table (the external linker's `.text` is not
//! `runtime.text`) fails the first check; a point inside an instruction fails the second.
use anyhow::{bail, Result};

use crate::sys::{instruction_starts, opens_like_go_function};

/// A function's code as read from the file: its name, its file offset, and its bytes.
pub struct Code<'a> {
    pub name: &'a str,
    pub offset: u64,
    pub bytes: &'a [u8],
}

impl Code<'_> {
    /// Ok if file offset `at` is the function's entry or an instruction boundary inside it;
    /// otherwise the one line that says why the probe is refused.
    pub fn check(&self, at: u64) -> Result<()> {
        let name = crate::profile::term_safe(self.name);
        if !opens_like_go_function(self.bytes) {
            bail!(
                "refusing goroutine probes: {name} (file offset {:#x}) does not open like a Go function, so its address is not trusted",
                self.offset
            );
        }
        let inside = at
            .checked_sub(self.offset)
            .filter(|&rel| rel < self.bytes.len() as u64);
        let Some(rel) = inside else {
            bail!("refusing a goroutine probe at file offset {at:#x}: it is outside {name}");
        };
        match instruction_starts(self.bytes, 0) {
            Some(starts) if starts.binary_search(&rel).is_ok() => Ok(()),
            Some(_) => {
                bail!("refusing a goroutine probe at {name}+{rel:#x}: not an instruction boundary")
            }
            None => bail!("refusing goroutine probes in {name}: its bytes do not decode"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Go function's opening: cmp rsp, [r14+0x10]; jbe +0x20; push rbp; mov rbp, rsp;
    /// sub rsp, 0x60; call rel32; nop…
    const GO_FN: [u8; 24] = [
        0x49, 0x3b, 0x66, 0x10, 0x76, 0x20, 0x55, 0x48, 0x89, 0xe5, 0x48, 0x83, 0xec, 0x60, 0xe8,
        0, 0, 0, 0, 0x90, 0x90, 0x90, 0x90, 0x90,
    ];

    #[test]
    fn points_on_instruction_boundaries_of_a_go_function_pass() {
        let f = Code {
            name: "runtime.semacquire1",
            offset: 0x1000,
            bytes: &GO_FN,
        };
        for at in [0x1000, 0x1004, 0x1006, 0x100e, 0x1013] {
            f.check(at).unwrap();
        }
    }

    #[test]
    fn a_wrong_address_is_refused() {
        // Inside the `cmp`: not an instruction boundary.
        let f = Code {
            name: "runtime.semacquire1",
            offset: 0x1000,
            bytes: &GO_FN,
        };
        let e = f.check(0x1002).unwrap_err().to_string();
        assert!(e.contains("not an instruction boundary"), "{e}");
        assert!(f.check(0x2000).is_err(), "outside the function");
        // A table based 0x100 off puts the "entry" in the middle of other code: the bytes
        // there do not open a Go function, so nothing in it is probed.
        let shifted = Code {
            name: "runtime.semacquire1",
            offset: 0x1008,
            bytes: &GO_FN[8..],
        };
        let e = shifted.check(0x1008).unwrap_err().to_string();
        assert!(e.contains("does not open like a Go function"), "{e}");
    }
}
