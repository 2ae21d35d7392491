//! The map's two concurrency primitives, behind one seam so the `shuttle` feature can swap in
//! model-checked versions: an atomically swapped `Arc` cell (arc-swap in real builds) and the
//! mutex guarding dirty (std's, so its waits are futex waits lockscope can see).
use std::ops::Deref;
use std::sync::Arc;

#[cfg(not(feature = "shuttle"))]
pub use std::sync::{Mutex, MutexGuard};

#[cfg(feature = "shuttle")]
pub use shuttle::sync::{Mutex, MutexGuard};

/// An `Arc<T>` that can be loaded, stored and compare-and-swapped atomically.
pub struct SwapCell<T> {
    #[cfg(not(feature = "shuttle"))]
    inner: arc_swap::ArcSwap<T>,
    /// Under shuttle each operation is one step on a modelled mutex: linearizable, like
    /// arc-swap's operations, and visible to the scheduler as a preemption point.
    #[cfg(feature = "shuttle")]
    inner: shuttle::sync::Mutex<Arc<T>>,
}

/// A loaded value: derefs to the `Arc<T>`. In real builds arc-swap's guard, which skips the
/// reference-count increment on the read fast path.
pub struct Loaded<T> {
    #[cfg(not(feature = "shuttle"))]
    inner: arc_swap::Guard<Arc<T>>,
    #[cfg(feature = "shuttle")]
    inner: Arc<T>,
}

impl<T> Deref for Loaded<T> {
    type Target = Arc<T>;
    fn deref(&self) -> &Arc<T> {
        &self.inner
    }
}

#[cfg(not(feature = "shuttle"))]
impl<T> SwapCell<T> {
    pub fn from_pointee(v: T) -> Self {
        SwapCell {
            inner: arc_swap::ArcSwap::from_pointee(v),
        }
    }
    pub fn load(&self) -> Loaded<T> {
        Loaded {
            inner: self.inner.load(),
        }
    }
    pub fn load_full(&self) -> Arc<T> {
        self.inner.load_full()
    }
    pub fn store(&self, v: Arc<T>) {
        self.inner.store(v)
    }
    pub fn swap(&self, v: Arc<T>) -> Arc<T> {
        self.inner.swap(v)
    }
    /// Installs `new` if the cell still holds `current`; returns what it held.
    pub fn compare_and_swap(&self, current: &Arc<T>, new: Arc<T>) -> Arc<T> {
        arc_swap::Guard::into_inner(self.inner.compare_and_swap(current, new))
    }
}

#[cfg(feature = "shuttle")]
impl<T> SwapCell<T> {
    fn cell(&self) -> shuttle::sync::MutexGuard<'_, Arc<T>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
    pub fn from_pointee(v: T) -> Self {
        SwapCell {
            inner: shuttle::sync::Mutex::new(Arc::new(v)),
        }
    }
    pub fn load(&self) -> Loaded<T> {
        Loaded {
            inner: self.cell().clone(),
        }
    }
    pub fn load_full(&self) -> Arc<T> {
        self.cell().clone()
    }
    pub fn store(&self, v: Arc<T>) {
        *self.cell() = v;
    }
    pub fn swap(&self, v: Arc<T>) -> Arc<T> {
        std::mem::replace(&mut *self.cell(), v)
    }
    pub fn compare_and_swap(&self, current: &Arc<T>, new: Arc<T>) -> Arc<T> {
        let mut cell = self.cell();
        let prev = cell.clone();
        if Arc::ptr_eq(&prev, current) {
            *cell = new;
        }
        prev
    }
}
