//! The kernel's event and loss counters: indexes of the per-CPU `COUNTERS` array, which
//! both sides size from [`NUM_COUNTERS`], derived from the enum itself.

/// Declares [`Counter`] and [`Counter::ALL`] from one list, so the count cannot drift.
macro_rules! counters {
    ($(#[$outer:meta])* pub enum Counter { $($(#[$doc:meta])* $name:ident,)+ }) => {
        $(#[$outer])*
        pub enum Counter {
            $($(#[$doc])* $name,)+
        }

        impl Counter {
            /// Every counter, in index order.
            pub const ALL: &'static [Counter] = &[$(Counter::$name),+];
        }
    };
}

counters! {
    /// Indexes of the per-CPU `COUNTERS` array. Every way an event can go missing has its own
    /// counter, so no loss is silent.
    #[repr(u32)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Counter {
        /// Futex syscalls made by the target (any op).
        Calls,
        /// Wait calls that entered.
        WaitEnters,
        /// Waits that returned EAGAIN at once: the word changed before the thread slept.
        Eagain,
        /// Wake calls that entered.
        WakeEnters,
        /// `bpf_get_stack` failed: the event is kept under [`crate::NO_STACK`].
        StackErrors,
        /// The stack map was full: the event is kept under [`crate::NO_STACK`].
        StackMapFull,
        /// The wait aggregate map was full: the wait is lost.
        WaitMapFull,
        /// The wake aggregate map was full: the wake is lost.
        WakeMapFull,
        /// A call or acquire found no room to keep its state until it ends, and is lost: a futex
        /// call whose tid's `INFLIGHT` slot held another thread's call (tids a multiple of
        /// [`crate::INFLIGHT_SLOTS`] apart, possible where `pid_max` is larger; the call displaced
        /// is the one lost, and its exit also counts as [`Counter::ExitWithoutEnter`]), or a
        /// goroutine or tokio acquire whose in-flight map was full.
        InflightFull,
        /// An exit with no matching entry: a call already in progress when tracing began.
        ExitWithoutEnter,
        /// The last-waker map could not be updated: waiter/waker pairing degrades.
        WakerMapFull,
        /// Waits that slept (ended other than by EAGAIN): the live progress count.
        Slept,
        /// DWARF mode: the snapshot ring buffer was full; the wait is counted, its stack lost.
        SnapshotsDropped,
        /// DWARF mode: the user stack could not be read at any size; sent without stack bytes.
        SnapshotReadErrors,
        /// A new stack's notice did not fit its ring buffer: its addresses are checked against
        /// the memory maps only at the next periodic re-read.
        NewStackNoticesLost,
        /// Wake calls that woke nobody: counted, no stack taken.
        EmptyWakes,
        /// Waits that ended before their waker's syscall did: handed to the waker to record.
        HandedOff,
        /// A handed-off wait found no free slot: recorded with no waker.
        HandoffsFull,
        /// Scheduler hooks: the sleeping-waiter map was full; the wait is lost.
        SchedTasksFull,
        /// Scheduler hooks: a wait ended with no wake seen in a futex call (a timer, a signal
        /// from the kernel, or a wake lockscope cannot see); recorded as a timeout.
        WakerUnseen,
        /// Another insert into a full kernel map, losing what it would have kept (not a wait
        /// or a wake): a forked child left untraced (`TARGETS`), a phase run not timed
        /// (`PHASE_START`), an on-CPU sample (`ONCPU`).
        MapInsertFailed,
    }
}

/// Slots in the `COUNTERS` array: one per [`Counter`].
pub const NUM_COUNTERS: u32 = Counter::ALL.len() as u32;

// Each counter's index is its place in `ALL`, which user space reads the array by.
const _: () = {
    let mut i = 0;
    while i < Counter::ALL.len() {
        assert!(Counter::ALL[i] as usize == i);
        i += 1;
    }
};
