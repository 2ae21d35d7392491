//! python: CPython's GIL as lock contention. A thread that wants the GIL waits in `take_gil`
//! on a pthread condition variable with a timeout (the switch interval, 5 ms): most of those
//! waits time out, the thread asks the holder to drop the GIL and waits again. The holder that
//! was asked waits in `drop_gil` until another thread has taken it. Both are a thread waiting
//! for the GIL, whatever primitive it sleeps on, so their timed-out waits are wait time too.
//! Needs CPython's symbols (`take_gil` is static: Debian's `python3.11d` has them, the
//! stripped `python3` does not).
use crate::profile::{function_names, Profile, Stack};

/// The GIL's own functions (CPython 3.9–3.12: `ceval_gil.c`/`ceval_gil.h`).
const GIL_FUNCTIONS: [&str; 2] = ["take_gil", "drop_gil"];

/// True when the stack waits inside the GIL's take or forced drop.
pub fn waits_for_gil(stack: &Stack) -> bool {
    function_names(stack).any(|n| GIL_FUNCTIONS.contains(&n.split('.').next().unwrap_or(n)))
}

/// The interpreter's version (`3.11`) from the file holding the GIL frames: `python3.11d`,
/// `libpython3.11.so.1.0`.
pub fn python_version(profile: &Profile, stack: &Stack) -> Option<String> {
    let gil = stack.frames.iter().find(|f| {
        f.syms
            .iter()
            .any(|s| GIL_FUNCTIONS.contains(&s.name.as_str()))
    })?;
    let path = &profile.modules.get(gil.module?)?.path;
    version_in_file_name(path.rsplit('/').next()?)
}

fn version_in_file_name(file: &str) -> Option<String> {
    let (_, after) = file.split_once("python")?;
    let version: String = after
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let version = version.trim_end_matches('.');
    version.contains('.').then(|| version.to_string())
}

/// Counts the timed-out waits of GIL rows as waits: each was a switch interval spent waiting
/// for the GIL. Other rows keep their timeouts apart ("not counted as contention"). The
/// longest of them is not kept; their average (about the switch interval) stands in.
pub fn fold_gil_timeouts(profile: &mut Profile) {
    let stacks = &profile.stacks;
    for r in profile.waits.iter_mut().filter(|r| r.timeouts > 0) {
        if r.stack
            .and_then(|s| stacks.get(s))
            .is_some_and(waits_for_gil)
        {
            r.max_ns = r.max_ns.max(r.timeout_ns / r.timeouts);
            r.count += r.timeouts;
            r.total_ns += r.timeout_ns;
            r.timeouts = 0;
            r.timeout_ns = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_comes_from_the_interpreter_or_its_library() {
        assert_eq!(version_in_file_name("python3.11d").as_deref(), Some("3.11"));
        assert_eq!(
            version_in_file_name("libpython3.12.so.1.0").as_deref(),
            Some("3.12")
        );
        assert_eq!(version_in_file_name("python3"), None);
        assert_eq!(version_in_file_name("libc.so.6"), None);
    }

    #[test]
    fn timed_out_gil_waits_become_waits_and_others_stay_timeouts() {
        use crate::profile::tests::{row, sample, stack};
        let mut p = sample();
        p.waits.clear();
        p.stacks = vec![
            stack(&["PyCOND_TIMEDWAIT", "take_gil", "eval_frame_handle_pending"]),
            stack(&["syscall", "wait_a_little"]),
        ];
        for s in [0, 1] {
            let mut r = row(Some(s), 7, 1, 2_000, 2_000);
            r.timeouts = 4;
            r.timeout_ns = 20_000_000;
            p.waits.push(r);
        }
        fold_gil_timeouts(&mut p);
        let (gil, other) = (&p.waits[0], &p.waits[1]);
        assert_eq!((gil.count, gil.total_ns, gil.timeouts), (5, 20_002_000, 0));
        assert_eq!(gil.max_ns, 5_000_000);
        assert_eq!(
            (other.count, other.timeouts, other.timeout_ns),
            (1, 4, 20_000_000)
        );
    }
}
