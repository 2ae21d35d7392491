//! klog: the kernel programs' rare diagnostics (why an event was dropped, an op not traced, a
//! stack that could not be read), carried by aya-log. They are off unless `RUST_LOG` asks for
//! them: the level is patched into the programs before load, so a disabled log costs one
//! compare, and only on those rare paths. The records hold the programs' own format strings
//! and numbers, never bytes from the target.
use aya_log::EbpfLogger;
use log::LevelFilter;

/// Routes `log` records to stderr if `RUST_LOG` is set (e.g. `RUST_LOG=debug`).
pub fn init_from_env() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = env_logger::Builder::from_env("RUST_LOG")
            .format_timestamp(None)
            .try_init();
    }
}

/// The level the kernel programs log at (aya-log's numbering: 0 off, 1 error … 5 trace),
/// from the user-space filter.
pub fn kernel_level() -> u8 {
    level_of(log::max_level())
}

fn level_of(f: LevelFilter) -> u8 {
    match f {
        LevelFilter::Off => 0,
        LevelFilter::Error => 1,
        LevelFilter::Warn => 2,
        LevelFilter::Info => 3,
        LevelFilter::Debug => 4,
        LevelFilter::Trace => 5,
    }
}

/// The reader of the kernel's log ring, when logging is on.
pub struct KernelLog(Option<EbpfLogger<&'static dyn log::Log>>);

impl KernelLog {
    /// Takes the log ring out of a loaded object when the level asks for records.
    pub fn open(ebpf: &mut aya::Ebpf, level: u8) -> KernelLog {
        KernelLog((level > 0).then(|| EbpfLogger::init(ebpf).ok()).flatten())
    }

    /// Prints what the programs logged since the last call.
    pub fn flush(&mut self) {
        if let Some(l) = &mut self.0 {
            l.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_aya_logs_numbering() {
        assert_eq!(level_of(LevelFilter::Off), 0);
        assert_eq!(
            level_of(LevelFilter::Error),
            aya_log::Level::Error as u8,
            "error"
        );
        assert_eq!(level_of(LevelFilter::Debug), aya_log::Level::Debug as u8);
        assert_eq!(level_of(LevelFilter::Trace), aya_log::Level::Trace as u8);
    }
}
