//! Writes that wait to be sent in batches, shared by the leader's proposals (`leader_batches`)
//! and a follower's forwarded writes (`forward_writes`): whatever waits when a batch slot frees
//! goes in the next batch, at most `in_flight` batches at once. A lone write is sent at once (no
//! timer); under load the queue that builds while batches are in flight becomes the next one.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

/// A write in a [`BatchQueue`].
pub(super) trait Batched {
    /// Its encoded size, for the byte bounds.
    fn size(&self) -> usize;

    /// Whether it may go in a batch that begins with `first` (a follower's batch goes to one leader).
    fn may_follow(&self, _first: &Self) -> bool {
        true
    }
}

/// A queue's bounds: of one batch, of everything waiting, and of batches in flight.
pub(super) struct BatchBounds {
    pub batch_writes: usize,
    /// A single write larger than this still goes, alone.
    pub batch_bytes: usize,
    pub queue_writes: usize,
    pub queue_bytes: usize,
    pub in_flight: usize,
}

pub(super) struct BatchQueue<T> {
    /// std Mutex: held only to push or take, never across an await.
    state: Mutex<Queue<T>>,
    in_flight: Arc<Semaphore>,
    bounds: BatchBounds,
}

struct Queue<T> {
    /// A sender task is running.
    running: bool,
    waiting: VecDeque<T>,
    /// The sizes of the writes in `waiting`.
    waiting_bytes: usize,
}

impl<T: Batched> BatchQueue<T> {
    pub(super) fn new(bounds: BatchBounds) -> Self {
        let queue = Queue { running: false, waiting: VecDeque::new(), waiting_bytes: 0 };
        BatchQueue { state: Mutex::new(queue), in_flight: Arc::new(Semaphore::new(bounds.in_flight)), bounds }
    }

    /// Queues `writes`, all or none: `Ok(true)` when the caller must start the sender
    /// ([`Self::send_while_waiting`]), `Err` with the writes when the queue has no room for them.
    pub(super) fn join(&self, writes: Vec<T>) -> Result<bool, Vec<T>> {
        let mut queue = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let bytes = writes.iter().fold(queue.waiting_bytes, |bytes, write| bytes.saturating_add(write.size()));
        if queue.waiting.len().saturating_add(writes.len()) > self.bounds.queue_writes
            || bytes > self.bounds.queue_bytes
        {
            return Err(writes);
        }
        queue.waiting_bytes = bytes;
        queue.waiting.extend(writes);
        Ok(!queue.waiting.is_empty() && !std::mem::replace(&mut queue.running, true))
    }

    /// The next batch: the oldest write and those behind it that may follow it, within the
    /// batch bounds. `None` (and the sender stops) when nothing waits.
    fn next_batch(&self) -> Option<Vec<T>> {
        let mut queue = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(first) = queue.waiting.pop_front() else {
            queue.running = false;
            return None;
        };
        let mut bytes = first.size();
        let mut batch = vec![first];
        while let Some(next) = queue.waiting.front() {
            if batch.len() >= self.bounds.batch_writes
                || bytes.saturating_add(next.size()) > self.bounds.batch_bytes
                || !next.may_follow(&batch[0])
            {
                break;
            }
            bytes += next.size();
            batch.extend(queue.waiting.pop_front());
        }
        queue.waiting_bytes = queue.waiting_bytes.saturating_sub(bytes);
        Some(batch)
    }

    /// The sender: while writes wait, takes a batch as soon as a slot is free and runs `send`
    /// with it on a task of its own, the slot held until it is done.
    pub(super) async fn send_while_waiting<Sending>(&self, mut send: impl FnMut(Vec<T>) -> Sending)
    where
        Sending: Future<Output = ()> + Send + 'static,
    {
        loop {
            let Ok(slot) = self.in_flight.clone().acquire_owned().await else { return };
            let Some(batch) = self.next_batch() else { return };
            let sending = send(batch);
            tokio::spawn(async move {
                sending.await;
                drop(slot);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write of `size` bytes for leader `to`.
    struct Write {
        size: usize,
        to: u64,
    }

    impl Batched for Write {
        fn size(&self) -> usize {
            self.size
        }
        fn may_follow(&self, first: &Self) -> bool {
            self.to == first.to
        }
    }

    fn writes(count: usize, size: usize) -> Vec<Write> {
        (0..count).map(|_| Write { size, to: 1 }).collect()
    }

    fn queue() -> BatchQueue<Write> {
        BatchQueue::new(BatchBounds {
            batch_writes: 4,
            batch_bytes: 100,
            queue_writes: 10,
            queue_bytes: 1_000,
            in_flight: 2,
        })
    }

    fn sizes(batch: Option<Vec<Write>>) -> Option<Vec<usize>> {
        batch.map(|batch| batch.iter().map(|write| write.size).collect())
    }

    #[test]
    fn a_batch_takes_the_oldest_writes_within_its_bounds_and_a_large_write_goes_alone() {
        let queue = queue();
        assert_eq!(queue.join(writes(1, 1)).ok(), Some(true), "the first write starts the sender");
        assert_eq!(queue.join(writes(5, 1)).ok(), Some(false), "the sender runs");
        assert_eq!(sizes(queue.next_batch()), Some(vec![1; 4]), "the count bound");
        assert_eq!(sizes(queue.next_batch()), Some(vec![1; 2]));
        assert!(queue.next_batch().is_none(), "nothing waits: the sender stops");
        assert_eq!(queue.join(vec![Write { size: 150, to: 1 }, Write { size: 60, to: 1 }]).ok(), Some(true));
        assert_eq!(queue.join(writes(1, 60)).ok(), Some(false));
        assert_eq!(sizes(queue.next_batch()), Some(vec![150]), "past the byte bound, alone");
        assert_eq!(sizes(queue.next_batch()), Some(vec![60]), "60 + 60 is past the byte bound");
        assert_eq!(sizes(queue.next_batch()), Some(vec![60]));
    }

    #[test]
    fn a_batch_ends_where_a_write_may_not_follow_its_first() {
        let queue = queue();
        let to = |to| Write { size: 1, to };
        assert!(queue.join(vec![to(1), to(1), to(2), to(1)]).is_ok());
        let leaders = |batch: Option<Vec<Write>>| batch.map(|b| b.iter().map(|w| w.to).collect::<Vec<_>>());
        assert_eq!(leaders(queue.next_batch()), Some(vec![1, 1]));
        assert_eq!(leaders(queue.next_batch()), Some(vec![2]));
        assert_eq!(leaders(queue.next_batch()), Some(vec![1]));
    }

    #[test]
    fn the_queue_refuses_writes_past_its_count_and_its_bytes_and_frees_what_batches_take() {
        let queue = queue();
        assert!(queue.join(writes(10, 1)).is_ok());
        assert_eq!(queue.join(writes(1, 1)).err().map(|w| w.len()), Some(1), "full by count");
        assert!(queue.next_batch().is_some());
        assert!(queue.join(writes(4, 1)).is_ok(), "a batch taken makes room");
        assert_eq!(queue.join(writes(1, 1)).err().map(|w| w.len()), Some(1), "full again");

        let by_bytes = BatchQueue::new(BatchBounds {
            batch_writes: 4,
            batch_bytes: 100,
            queue_writes: 10,
            queue_bytes: 300,
            in_flight: 2,
        });
        assert!(by_bytes.join(writes(1, 300)).is_ok());
        assert!(by_bytes.join(writes(1, 1)).is_err(), "full by bytes");
        assert_eq!(sizes(by_bytes.next_batch()), Some(vec![300]));
        assert!(by_bytes.join(writes(2, 150)).is_ok(), "its bytes are freed");
        assert!(by_bytes.join(writes(3, 1)).is_err(), "all or none");
    }

    #[tokio::test]
    async fn the_sender_keeps_at_most_its_slots_in_flight_and_stops_when_nothing_waits() {
        let queue = Arc::new(queue());
        assert_eq!(queue.join(writes(10, 1)).ok(), Some(true));
        let (release, released) = tokio::sync::watch::channel(false);
        let (sent_tx, mut sent) = tokio::sync::mpsc::channel(8);
        let sender = tokio::spawn({
            let queue = queue.clone();
            async move {
                queue
                    .send_while_waiting(|batch| {
                        let (mut released, sent_tx) = (released.clone(), sent_tx.clone());
                        async move {
                            let _ = sent_tx.send(batch.len()).await;
                            let _ = released.wait_for(|go| *go).await;
                        }
                    })
                    .await
            }
        });
        assert_eq!((sent.recv().await, sent.recv().await), (Some(4), Some(4)));
        tokio::task::yield_now().await;
        assert!(sent.try_recv().is_err(), "a third batch waits for a slot");
        release.send(true).expect("the batches wait");
        assert_eq!(sent.recv().await, Some(2));
        sender.await.expect("the sender stops once the queue is empty");
        assert_eq!(queue.join(writes(1, 1)).ok(), Some(true), "the next write starts a sender again");
    }
}
