//! entry: a key's slot, shared by the map's read snapshot and its dirty map, and the
//! lock-free transitions on it (update in place, delete, expunge on a rebuild).
use std::sync::Arc;

use crate::sync::SwapCell;

/// What a key's slot holds.
pub(crate) enum State<V> {
    Value(V),
    /// Deleted; dirty (if it exists) still holds the entry.
    Deleted,
    /// Deleted and left out of dirty by a rebuild.
    Expunged,
}

/// A key's slot, shared by `read` and `dirty`.
pub struct Entry<V> {
    p: SwapCell<State<V>>,
}

impl<V: Clone> Entry<V> {
    pub(crate) fn new(v: V) -> Arc<Self> {
        Arc::new(Entry {
            p: SwapCell::from_pointee(State::Value(v)),
        })
    }

    pub(crate) fn load(&self) -> Option<V> {
        match &**self.p.load() {
            State::Value(v) => Some(v.clone()),
            _ => None,
        }
    }

    /// The one compare-and-swap loop every transition uses: `decide` looks at the current
    /// state and either stops (`Err(result)`) or names the state to install (`Ok((new,
    /// result))`); a lost race re-reads and decides again.
    pub(crate) fn transition<R>(
        &self,
        mut decide: impl FnMut(&State<V>) -> Result<(Arc<State<V>>, R), R>,
    ) -> R {
        let mut cur = self.p.load_full();
        loop {
            let (next, result) = match decide(&cur) {
                Ok(x) => x,
                Err(result) => return result,
            };
            let prev = self.p.compare_and_swap(&cur, next);
            if Arc::ptr_eq(&prev, &cur) {
                return result;
            }
            cur = prev;
        }
    }

    /// Swaps in `v` unless the entry is expunged (then it must be revived under the lock).
    /// Returns `Err(())` when expunged, else the previous value.
    pub(crate) fn try_swap(&self, v: &V) -> Result<Option<V>, ()> {
        let new = Arc::new(State::Value(v.clone()));
        self.transition(|s| match s {
            State::Expunged => Err(Err(())),
            State::Value(old) => Ok((new.clone(), Ok(Some(old.clone())))),
            State::Deleted => Ok((new.clone(), Ok(None))),
        })
    }

    /// Lock held: an expunged entry becomes deleted (and must be added to dirty). True if it
    /// was expunged.
    pub(crate) fn unexpunge_locked(&self) -> bool {
        self.transition(|s| match s {
            State::Expunged => Ok((Arc::new(State::Deleted), true)),
            _ => Err(false),
        })
    }

    /// Lock held and entry known not expunged: unconditional swap.
    pub(crate) fn swap_locked(&self, v: &V) -> Option<V> {
        match &*self.p.swap(Arc::new(State::Value(v.clone()))) {
            State::Value(old) => Some(old.clone()),
            _ => None,
        }
    }

    /// Lock held, during a rebuild: a deleted entry becomes expunged. True if the entry is (now)
    /// expunged, i.e. must be left out of the new dirty map.
    pub(crate) fn try_expunge_locked(&self) -> bool {
        let expunged = Arc::new(State::Expunged);
        self.transition(|s| match s {
            State::Expunged => Err(true),
            State::Value(_) => Err(false),
            State::Deleted => Ok((expunged.clone(), true)),
        })
    }

    /// Lock held, entry not expunged: the current value if there is one, else `v` stored.
    pub(crate) fn load_or_store_locked(&self, v: &V) -> (V, bool) {
        let new = Arc::new(State::Value(v.clone()));
        self.transition(|s| match s {
            State::Value(x) => Err((x.clone(), true)),
            _ => Ok((new.clone(), (v.clone(), false))),
        })
    }

    /// Deletes the value; returns it if there was one.
    pub(crate) fn delete(&self) -> Option<V> {
        let deleted = Arc::new(State::Deleted);
        self.transition(|s| match s {
            State::Value(v) => Ok((deleted.clone(), Some(v.clone()))),
            _ => Err(None),
        })
    }

    /// Swaps `new` in only if the current value equals `old`.
    pub(crate) fn compare_and_swap(&self, old: &V, new: &V) -> bool
    where
        V: PartialEq,
    {
        let next = Arc::new(State::Value(new.clone()));
        self.transition(|s| match s {
            State::Value(v) if v == old => Ok((next.clone(), true)),
            _ => Err(false),
        })
    }

    /// Deletes only if the current value equals `old`.
    pub(crate) fn compare_and_delete(&self, old: &V) -> bool
    where
        V: PartialEq,
    {
        let deleted = Arc::new(State::Deleted);
        self.transition(|s| match s {
            State::Value(v) if v == old => Ok((deleted.clone(), true)),
            _ => Err(false),
        })
    }
}
