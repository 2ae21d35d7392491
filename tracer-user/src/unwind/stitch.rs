//! stitch: joins a CFI unwind that stopped early (its stack copy ran out) to the kernel's
//! frame-pointer walk of the same wait.
//!
//! The kernel walk starts from `rbp` at the syscall, so it skips every frameless frame below
//! the first one that keeps a frame pointer (Debian's glibc: `pthread_mutex_lock`,
//! `__lll_lock_wait`, … and, worse, the program's function that called them, whose return
//! address is never read). Its frames from index 1 on are the return addresses of frames
//! that keep a frame pointer, outermost last. A CFI walk of a stack copy has every frame, but
//! only as far as the copy reaches. Where the two share a return address they describe the
//! same frame, and the stack is the CFI frames up to it and the kernel's beyond it.
use super::Ended;
use crate::symbolize::Addr;

/// What to do when the CFI frames share no address with the kernel walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Join {
    /// Keep the CFI frames alone (DWARF mode: the program keeps no frame pointers, so the
    /// kernel walk is likely garbage).
    OnlyWhereAligned,
    /// Append the kernel walk's outer frames anyway (`fp+cfi`: the program keeps frame
    /// pointers, so those frames are real; at worst a few frames between are missing).
    Always,
}

/// The whole stack from a CFI walk and the kernel's frame-pointer walk (`kernel[0]` is the
/// instruction pointer).
pub fn stitch(cfi: Vec<Addr>, ended: Ended, kernel: &[u64], join: Join) -> Vec<Addr> {
    if ended == Ended::Complete || kernel.len() < 2 {
        return cfi;
    }
    let outer = &kernel[1..];
    // The kernel walk is a subsequence of the true stack (it skips frameless frames' own
    // return addresses), and so of the CFI frames as far as they reach. Align on the first
    // kernel frame the CFI walk has, follow the kernel walk through the rest of the CFI
    // frames, and what is left of it lies beyond the copy.
    let first = outer.iter().enumerate().find_map(|(j, &a)| {
        cfi.iter()
            .skip(1)
            .position(|f| f.raw() == a)
            .map(|i| (i + 1, j))
    });
    let beyond = match (first, join) {
        (Some((i, j)), _) => {
            let mut j = j + 1;
            for f in &cfi[i + 1..] {
                if outer.get(j) == Some(&f.raw()) {
                    j += 1;
                }
            }
            &outer[j..]
        }
        (None, Join::Always) => outer,
        (None, Join::OnlyWhereAligned) => &[],
    };
    let mut out = cfi;
    out.extend(beyond.iter().map(|&a| Addr::Return(a)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ret(v: &[u64]) -> Vec<Addr> {
        let mut out = vec![Addr::Ip(v[0])];
        out.extend(v[1..].iter().map(|&a| Addr::Return(a)));
        out
    }

    /// futex_wait ← __lll_lock_wait ← pthread_mutex_lock ← lock_site ← worker ← start_thread:
    /// the kernel walk from rbp (lock_site's frame) reads worker's address first and never
    /// lock_site's; the CFI copy ran out in worker.
    #[test]
    fn the_frameless_callers_frame_comes_back() {
        let (ip, lll, pml, site, worker, start) = (0x10, 0x20, 0x30, 0x40, 0x50, 0x60);
        let kernel = [ip, worker, start];
        let cfi = ret(&[ip, lll, pml, site, worker]);
        assert_eq!(
            stitch(cfi.clone(), Ended::Early, &kernel, Join::Always),
            ret(&[ip, lll, pml, site, worker, start])
        );
        assert_eq!(
            stitch(cfi, Ended::Early, &kernel, Join::OnlyWhereAligned),
            ret(&[ip, lll, pml, site, worker, start])
        );
    }

    #[test]
    fn a_complete_walk_is_kept_as_it_is() {
        let cfi = ret(&[0x10, 0x20, 0x30]);
        assert_eq!(
            stitch(cfi.clone(), Ended::Complete, &[0x10, 0x99], Join::Always),
            cfi
        );
    }

    #[test]
    fn unaligned_walks_join_only_when_the_program_keeps_frame_pointers() {
        let cfi = ret(&[0x10, 0x20]);
        let kernel = [0x10, 0x70, 0x80];
        assert_eq!(
            stitch(cfi.clone(), Ended::Early, &kernel, Join::OnlyWhereAligned),
            cfi
        );
        assert_eq!(
            stitch(cfi, Ended::Early, &kernel, Join::Always),
            ret(&[0x10, 0x20, 0x70, 0x80])
        );
    }

    /// Recursion: the same return address at two depths, both inside the copy.
    #[test]
    fn recursion_does_not_repeat_frames() {
        let kernel = [0x10, 0x40, 0x40, 0x50];
        let cfi = ret(&[0x10, 0x20, 0x40, 0x40]);
        assert_eq!(
            stitch(cfi, Ended::Early, &kernel, Join::Always),
            ret(&[0x10, 0x20, 0x40, 0x40, 0x50])
        );
    }

    /// A frameless function between two frame-pointer frames: the kernel walk has the
    /// return address into it but not its own.
    #[test]
    fn frameless_frames_between_are_kept_from_the_copy() {
        // ip ← a (fp) ← b (frameless) ← c (fp) ← d; the kernel reads a's and c's returns.
        let kernel = [0x10, 0xa0, 0xc0, 0xd0];
        let cfi = ret(&[0x10, 0xa0, 0xb0, 0xc0]);
        assert_eq!(
            stitch(cfi, Ended::Early, &kernel, Join::OnlyWhereAligned),
            ret(&[0x10, 0xa0, 0xb0, 0xc0, 0xd0])
        );
    }
}
