//! The command timeout of a stream (rows, COPY): it bounds each wait for the server, not
//! the whole transfer. Armed when a poll finds nothing to read, disarmed when something
//! arrives; one timer for the stream's life, moved rather than remade.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

#[derive(Debug)]
pub(super) struct WaitTimer {
    limit: Option<Duration>,
    sleep: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl WaitTimer {
    pub(super) fn new(limit: Option<Duration>) -> WaitTimer {
        WaitTimer {
            limit,
            sleep: None,
            armed: false,
        }
    }

    /// After a poll that found nothing: `Some(limit)` when the wait has lasted the limit.
    pub(super) fn poll_expired(&mut self, cx: &mut Context<'_>) -> Option<Duration> {
        let limit = self.limit?;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if !self.armed {
            sleep.as_mut().reset(Instant::now() + limit);
            self.armed = true;
        }
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Some(limit),
            Poll::Pending => None,
        }
    }

    /// Something arrived: the next wait starts anew.
    pub(super) fn arrived(&mut self) {
        self.armed = false;
    }
}
