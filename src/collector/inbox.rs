//! The actor's inbox: several bounded channels in, one stream out, in the
//! order the messages were sent.
//!
//! Writers on different cores that share one channel contend for the same
//! few cache lines on every send. Measured with `cargo bench --bench
//! collector` (4 writers, 2 cores): one channel carried 3.5 to 8.2 M
//! messages/s depending on how the scheduler placed the tasks, four carried
//! 8.9 to 11.7 M/s. So each handle sends on one of a few shards, and order
//! is restored here.
//!
//! Order: every message carries the time it was sent. Before draining the
//! shards the inbox reads the clock (the watermark) and releases, sorted by
//! send time, only messages sent before it; later ones wait for the next
//! round. If message A was sent before B's send began, A was enqueued before
//! B was stamped, so before the watermark of any round that releases B: the
//! drain, which starts after the watermark, sees A, and the sort puts it
//! first. A handle's own messages stay in order (one shard, FIFO, stamps
//! rising); concurrent sends may be released in either order.

use std::future::poll_fn;
use std::task::Poll;
use std::time::Instant;

use tokio::sync::mpsc;

use super::event::{Envelope, Message};

pub(super) struct Inbox {
    shards: Vec<mpsc::Receiver<Envelope>>,
    /// Drained from the shards, not yet released: sent after a watermark.
    held: Vec<Envelope>,
}

impl Inbox {
    pub(super) fn new(shards: Vec<mpsc::Receiver<Envelope>>) -> Self {
        Inbox {
            shards,
            held: Vec::new(),
        }
    }

    /// Waits until messages are there, then appends to `out`, in send
    /// order, those sent before this round's watermark. Returns `false` once
    /// every shard is closed and drained.
    pub(super) async fn recv(&mut self, out: &mut Vec<Message>) -> bool {
        poll_fn(|cx| {
            let watermark = Instant::now();
            let held_before = self.held.len();
            let (mut open, mut sources) = (0, usize::from(held_before > 0));
            for shard in &mut self.shards {
                // Everything queued, which is at most the shard's capacity:
                // a message left behind could have been sent before one
                // released now.
                let limit = shard.max_capacity();
                match shard.poll_recv_many(cx, &mut self.held, limit) {
                    Poll::Ready(0) => {} // closed and empty
                    Poll::Ready(_) => {
                        open += 1;
                        sources += 1;
                    }
                    Poll::Pending => open += 1,
                }
            }
            if self.held.is_empty() {
                return if open == 0 {
                    Poll::Ready(false)
                } else {
                    Poll::Pending
                };
            }
            if sources > 1 {
                // Stable: equal stamps keep their shard's order.
                self.held.sort_by_key(|envelope| envelope.sent);
            }
            let released = self.held.partition_point(|e| e.sent < watermark);
            if released == 0 {
                // All sent during this very round: take them next round.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            out.extend(self.held.drain(..released).map(|e| e.message));
            Poll::Ready(true)
        })
        .await
    }

    /// Refuses new messages; those already queued are still received.
    pub(super) fn close(&mut self) {
        for shard in &mut self.shards {
            shard.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::event::Update;
    use crate::lsn::Lsn;

    fn envelope(lsn: u64) -> Envelope {
        Envelope::new(Message::Update(Update::LatestLsn(Lsn(lsn))))
    }

    fn lsns(messages: &[Message]) -> Vec<u64> {
        messages
            .iter()
            .map(|m| match m {
                Message::Update(Update::LatestLsn(lsn)) => lsn.0,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[tokio::test]
    async fn messages_from_several_shards_come_out_in_send_order() {
        let (a_tx, a_rx) = mpsc::channel(16);
        let (b_tx, b_rx) = mpsc::channel(16);
        let mut inbox = Inbox::new(vec![a_rx, b_rx]);
        // Sent 1, 2, 3, 4 alternating shards; shard b is drained first.
        a_tx.send(envelope(1)).await.unwrap();
        b_tx.send(envelope(2)).await.unwrap();
        a_tx.send(envelope(3)).await.unwrap();
        b_tx.send(envelope(4)).await.unwrap();
        inbox.shards.swap(0, 1);
        let mut out = Vec::new();
        while out.len() < 4 {
            assert!(inbox.recv(&mut out).await);
        }
        assert_eq!(lsns(&out), [1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn a_full_shard_is_drained_before_a_later_message_is_released() {
        let (a_tx, a_rx) = mpsc::channel(2048);
        let (b_tx, b_rx) = mpsc::channel(2048);
        let mut inbox = Inbox::new(vec![b_rx, a_rx]);
        for lsn in 0..2048 {
            a_tx.send(envelope(lsn)).await.unwrap();
        }
        b_tx.send(envelope(9999)).await.unwrap();
        let mut out = Vec::new();
        assert!(inbox.recv(&mut out).await);
        assert_eq!(out.len(), 2049);
        assert_eq!(lsns(&out).last(), Some(&9999));
    }

    #[tokio::test]
    async fn messages_stamped_after_the_watermark_wait_for_the_next_round() {
        let (tx, rx) = mpsc::channel(16);
        let mut inbox = Inbox::new(vec![rx]);
        let late = Envelope {
            sent: Instant::now() + std::time::Duration::from_millis(50),
            ..envelope(2)
        };
        tx.send(envelope(1)).await.unwrap();
        tx.send(late).await.unwrap();
        let mut out = Vec::new();
        assert!(inbox.recv(&mut out).await);
        assert_eq!(lsns(&out), [1]);
        assert!(inbox.recv(&mut out).await);
        assert_eq!(lsns(&out), [1, 2]);
    }

    #[tokio::test]
    async fn recv_ends_once_every_shard_is_closed_and_drained() {
        let (a_tx, a_rx) = mpsc::channel(4);
        let (b_tx, b_rx) = mpsc::channel(4);
        let mut inbox = Inbox::new(vec![a_rx, b_rx]);
        a_tx.send(envelope(7)).await.unwrap();
        inbox.close();
        assert!(b_tx.send(envelope(8)).await.is_err());
        let mut out = Vec::new();
        assert!(inbox.recv(&mut out).await);
        assert_eq!(lsns(&out), [7]);
        assert!(!inbox.recv(&mut out).await);
        drop(a_tx);
    }
}
