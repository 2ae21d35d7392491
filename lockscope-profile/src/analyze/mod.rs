//! analyze: what a profile's rows mean. Folds the wait rows into the groups a report shows
//! (`aggregate`), says what a waiter waited *for* (`waitclass`: contention or idle), and
//! explains bundled-map and `sync.Map` waits in the map's own terms (`attribute`, `behind`;
//! `trie` for Go 1.24+'s hash-trie `sync.Map`).
//!
//! Exposes the view options and grouping the renderers and commands use, the wait classifier
//! and the map attribution; it reads the profile and `tracee`, and nothing above.
mod aggregate;
mod attribute;
mod behind;
mod trie;
mod waitclass;

pub use aggregate::{
    groups, shown_rows, shown_totals, timeout_totals, Group, GroupBy, Key, SortKey, ViewOptions,
    Weight, DEFAULT_FRAMES, DEFAULT_TOP,
};
pub use attribute::{attribute, category_of, lock_primitive};
pub use behind::{behind_label, Behind, Share};
pub use trie::attribute_trie;
pub use waitclass::{classify, Waits};
