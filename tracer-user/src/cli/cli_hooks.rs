//! `--hooks`: which kernel hooks carry the futex events (see `attach::HookChoice`).

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum HooksArg {
    Auto,
    Sched,
    Syscalls,
}

impl From<HooksArg> for crate::attach::HookChoice {
    fn from(h: HooksArg) -> Self {
        match h {
            HooksArg::Auto => Self::Auto,
            HooksArg::Sched => Self::Sched,
            HooksArg::Syscalls => Self::Syscalls,
        }
    }
}
