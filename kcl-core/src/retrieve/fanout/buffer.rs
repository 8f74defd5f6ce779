//! The bounded queue between a subscription's event stream and `next_batch`.
//!
//! One producer (the subscription task) and one consumer (the reader). The producer asks for room *before* it reads
//! the next event from the stream ([`EventBuffer::wait_for_room`]); while there is no room it does not read, so the
//! transport's flow control (HTTP/2 window) pushes back on the service. Because the single producer only pushes after
//! room was granted, the queue never holds more than `max_events` events, nor more than `max_bytes` plus one event's
//! bytes — the bound holds whatever the service sends and however slow the processor is.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

struct State<T> {
    queue: VecDeque<(T, usize)>,
    bytes: usize,
    closed: bool,
}

/// A bounded single-producer single-consumer queue that counts events and bytes.
pub(crate) struct EventBuffer<T> {
    state: Mutex<State<T>>,
    max_events: usize,
    max_bytes: usize,
    /// Signalled when an item is pushed or the producer closes the buffer.
    pushed: Notify,
    /// Signalled when an item is popped.
    popped: Notify,
}

impl<T> EventBuffer<T> {
    /// A buffer for at most `max_events` events and (about) `max_bytes` bytes; both at least 1.
    pub(crate) fn new(max_events: usize, max_bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State { queue: VecDeque::new(), bytes: 0, closed: false }),
            max_events: max_events.max(1),
            max_bytes: max_bytes.max(1),
            pushed: Notify::new(),
            popped: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding this lock cannot leave the queue inconsistent (every update is one statement), so a
        // poisoned lock is still usable.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn has_room(&self, state: &State<T>) -> bool {
        state.queue.len() < self.max_events && state.bytes < self.max_bytes
    }

    /// Waits until there is room for one more event; `false` if `limit` passed first (the queue stayed full).
    pub(crate) async fn wait_for_room(&self, limit: Option<Duration>) -> bool {
        let wait = async {
            loop {
                let notified = self.popped.notified();
                tokio::pin!(notified);
                // Registered before the check, so a pop between the check and the await is not missed.
                notified.as_mut().enable();
                if self.has_room(&self.lock()) {
                    return;
                }
                notified.await;
            }
        };
        match limit {
            None => {
                wait.await;
                true
            }
            Some(limit) => tokio::time::timeout(limit, wait).await.is_ok(),
        }
    }

    /// Appends an item (call after [`wait_for_room`](Self::wait_for_room) granted room).
    pub(crate) fn push(&self, value: T, bytes: usize) {
        {
            let mut state = self.lock();
            state.bytes = state.bytes.saturating_add(bytes);
            state.queue.push_back((value, bytes));
        }
        self.pushed.notify_one();
    }

    /// Marks the end of the producer: once drained, [`pop`](Self::pop) returns `None`.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.pushed.notify_one();
    }

    /// The next item, waiting for one; `None` when the producer closed the buffer and it is empty.
    ///
    /// Cancellation-safe: an item is only removed in the same synchronous step that returns it.
    pub(crate) async fn pop(&self) -> Option<T> {
        loop {
            let notified = self.pushed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                if let Some((value, bytes)) = state.queue.pop_front() {
                    state.bytes = state.bytes.saturating_sub(bytes);
                    drop(state);
                    self.popped.notify_one();
                    return Some(value);
                }
                if state.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Events and bytes queued now.
    pub(crate) fn len(&self) -> (usize, usize) {
        let state = self.lock();
        (state.queue.len(), state.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn room_is_refused_at_either_bound_and_granted_after_a_pop() {
        let buffer = EventBuffer::<u32>::new(2, 100);
        assert!(buffer.wait_for_room(Some(Duration::from_millis(1))).await);
        buffer.push(1, 10);
        buffer.push(2, 10);
        assert!(!buffer.wait_for_room(Some(Duration::from_millis(20))).await, "event bound");
        assert_eq!(buffer.pop().await, Some(1));
        assert!(buffer.wait_for_room(Some(Duration::from_millis(1))).await);
        buffer.push(3, 200);
        assert!(!buffer.wait_for_room(Some(Duration::from_millis(20))).await, "byte bound");
        assert_eq!(buffer.len(), (2, 210));
        let waiter = {
            let buffer = Arc::clone(&buffer);
            tokio::spawn(async move { buffer.wait_for_room(None).await })
        };
        assert_eq!(buffer.pop().await, Some(2));
        assert_eq!(buffer.pop().await, Some(3));
        assert!(waiter.await.unwrap_or(false));
        buffer.close();
        assert_eq!(buffer.pop().await, None);
    }

    #[tokio::test]
    async fn pop_waits_for_a_push() {
        let buffer = EventBuffer::<u32>::new(1, 1);
        let consumer = {
            let buffer = Arc::clone(&buffer);
            tokio::spawn(async move { buffer.pop().await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        buffer.push(7, 1_000);
        assert_eq!(consumer.await.ok().flatten(), Some(7));
    }
}
