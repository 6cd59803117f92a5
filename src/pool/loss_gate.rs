//! After connections are lost, the pool opens replacements one at a time until one
//! succeeds (see `Shared::spawn_open`): the pool cannot yet tell a terminated session from
//! a database that went down, and one connect tells it. This gate lets that one open
//! through, and holds the others back while it runs.

use std::time::{Duration, Instant};

use crate::sync::{AtomicBool, Mutex, Ordering};

#[derive(Debug)]
pub(super) struct LossGate {
    /// A connection was lost (it broke, or the server ended it) and no connect has
    /// succeeded since.
    lost: AtomicBool,
    /// The open let through, while it runs: its ticket and when it started; and the last
    /// ticket handed out.
    open: Mutex<(Option<(u64, Instant)>, u64)>,
    /// Since the last connect that succeeded, the server ended a session it had accepted
    /// (see [`LossGate::ended_once`]).
    ended: AtomicBool,
}

/// Whether an open may start now.
pub(super) enum Entry {
    /// No loss waits for its answer: open as usual.
    Free,
    /// The one open after a loss: hold the pass while it runs.
    Alone(u64),
    /// Another open after a loss is under way: wait for its answer.
    Held,
}

impl LossGate {
    pub(super) fn new() -> LossGate {
        LossGate {
            lost: AtomicBool::new(false),
            open: Mutex::new((None, 0)),
            ended: AtomicBool::new(false),
        }
    }

    /// A connection was lost.
    pub(super) fn lost(&self) {
        self.lost.store(true, Ordering::Release);
    }

    /// A connect succeeded: the database is there, opens run in parallel again.
    pub(super) fn connected(&self) {
        self.lost.store(false, Ordering::Release);
        self.ended.store(false, Ordering::Release);
    }

    /// The server accepted a new session and ended it before it could be used (a wave of
    /// terminations reached it while it was validated): true the first time since the
    /// last connect that succeeded, when the database is plainly there and the next open
    /// may start at once; a second time in a row, the end counts as a failed connect, so
    /// a server that ends every new session is retried on the reconnection schedule.
    pub(super) fn ended_once(&self) -> bool {
        !self.ended.swap(true, Ordering::AcqRel)
    }

    /// Asks to start an open. The open let through is let run alone for `alone_for` at
    /// most: past it (a connect with no timeout that hangs), the next one goes through
    /// too, so a pool never waits forever on one connect.
    pub(super) fn enter(&self, alone_for: Duration) -> Entry {
        if !self.lost.load(Ordering::Acquire) {
            return Entry::Free;
        }
        let mut open = self.open.lock();
        match open.0 {
            Some((_, since)) if since.elapsed() < alone_for => Entry::Held,
            _ => {
                open.1 += 1;
                open.0 = Some((open.1, Instant::now()));
                Entry::Alone(open.1)
            }
        }
    }

    /// The pass of the open with `ticket` ends (it succeeded or failed). The gate is left
    /// to a later open that took it over.
    pub(super) fn leave(&self, ticket: u64) {
        let mut open = self.open.lock();
        if open.0.is_some_and(|(t, _)| t == ticket) {
            open.0 = None;
        }
    }
}

/// Gives the gate back when dropped: when its open ends, or if its task ends otherwise.
pub(super) struct Pass<'a> {
    pub(super) gate: &'a LossGate,
    pub(super) ticket: Option<u64>,
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.ticket {
            self.gate.leave(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_open_at_a_time_after_a_loss_until_it_ends() {
        let g = LossGate::new();
        let long = Duration::from_secs(3600);
        assert!(matches!(g.enter(long), Entry::Free));
        g.lost();
        let Entry::Alone(t) = g.enter(long) else {
            panic!("the first open after a loss goes through")
        };
        assert!(matches!(g.enter(long), Entry::Held));
        drop(Pass {
            gate: &g,
            ticket: Some(t),
        });
        let Entry::Alone(_) = g.enter(long) else {
            panic!("the next one goes through once it ended")
        };
        g.connected();
        assert!(matches!(g.enter(long), Entry::Free));
    }

    #[test]
    fn a_session_ended_after_it_was_accepted_is_let_pass_once_in_a_row() {
        let g = LossGate::new();
        assert!(g.ended_once());
        assert!(!g.ended_once(), "the second in a row counts");
        g.connected();
        assert!(g.ended_once());
    }

    #[test]
    fn an_open_that_runs_too_long_is_overtaken_and_its_end_leaves_the_next_alone() {
        let g = LossGate::new();
        g.lost();
        let Entry::Alone(first) = g.enter(Duration::ZERO) else {
            panic!("goes through")
        };
        let Entry::Alone(second) = g.enter(Duration::ZERO) else {
            panic!("past its time, the next goes through")
        };
        g.leave(first);
        assert!(
            matches!(g.enter(Duration::from_secs(3600)), Entry::Held),
            "the first open's end left the second's pass in place"
        );
        g.leave(second);
        assert!(matches!(
            g.enter(Duration::from_secs(3600)),
            Entry::Alone(_)
        ));
    }
}
