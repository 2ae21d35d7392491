//! commands: what each command does, driving the stages. `record` once, `top` live, the
//! `agent` for many processes as a daemon; `session` is the setup they share (target, unwinder,
//! attach, probes), `follow` merges followed children into a record, and `options` holds the
//! validated options each command runs on.
//!
//! Exposes the three commands and their options, for `cli` and `main` only: no stage below
//! imports this folder.
mod agent;
mod follow;
mod options;
mod record;
mod session;
mod top;
mod tty;

pub(crate) use agent::run as agent;
pub(crate) use options::{
    AgentOptions, Launch, Listen, RecordOptions, ReportOptions, Select, TopOptions,
};
pub(crate) use record::run as record;
pub(crate) use top::run as top;
