//! The table of open connections, and which one to shed when it is full.
//!
//! A server that stops accepting at its connection limit lets anyone who
//! holds idle connections (a flood, slowloris, a crowd of keep-alive clients)
//! deny every new scraper: Prometheus opens a fresh connection for every
//! scrape when its interval exceeds the idle timeout. So the server always
//! accepts, and at the limit closes the oldest connection that has no
//! request in flight (idle between requests, or still sending its headers),
//! to make room. Only when every open connection is serving a request is
//! the new one refused.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::Notify;

/// The open connections, oldest first.
#[derive(Debug)]
pub struct Table {
    max: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    /// By id, which is the order of admission: the first idle one is the
    /// oldest.
    open: BTreeMap<u64, Arc<Conn>>,
    /// Connections shed so far.
    shed: u64,
}

/// One connection's state, shared by its task and the table.
#[derive(Debug, Default)]
struct Conn {
    /// Requests being served (headers read, response not yet written).
    busy: AtomicUsize,
    /// Told when the table sheds this connection.
    shed: Notify,
}

/// What [`Table::admit`] decided.
#[derive(Debug)]
pub enum Admission {
    /// Admitted, with room to spare.
    Admitted(Entry),
    /// Admitted after shedding the oldest idle connection.
    AdmittedShedding(Entry),
    /// Refused: every open connection is serving a request.
    Refused,
}

impl Table {
    /// A table of at most `max` connections.
    pub fn new(max: usize) -> Arc<Table> {
        Arc::new(Table {
            max: max.max(1),
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a new connection; at the limit, sheds the oldest connection
    /// without a request in flight to make room for it.
    pub fn admit(self: &Arc<Self>) -> Admission {
        let mut inner = self.lock();
        let mut shed = false;
        if inner.open.len() >= self.max {
            let oldest_idle = inner
                .open
                .iter()
                .find(|(_, c)| c.busy.load(Ordering::Acquire) == 0)
                .map(|(id, _)| *id);
            let Some(id) = oldest_idle else {
                return Admission::Refused;
            };
            if let Some(conn) = inner.open.remove(&id) {
                // Kept if its task is not waiting yet: it sees it at once.
                conn.shed.notify_one();
            }
            inner.shed += 1;
            shed = true;
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let conn = Arc::new(Conn::default());
        inner.open.insert(id, conn.clone());
        let entry = Entry {
            table: self.clone(),
            id,
            conn,
        };
        if shed {
            Admission::AdmittedShedding(entry)
        } else {
            Admission::Admitted(entry)
        }
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.lock().open.len()
    }

    /// Connections shed since the start.
    pub fn shed_total(&self) -> u64 {
        self.lock().shed
    }
}

/// A connection's place in the table; leaving it (on drop) frees the place.
#[derive(Debug)]
pub struct Entry {
    table: Arc<Table>,
    id: u64,
    conn: Arc<Conn>,
}

impl Entry {
    /// Marks a request in flight until the guard is dropped.
    pub fn busy(&self) -> Busy {
        self.conn.busy.fetch_add(1, Ordering::AcqRel);
        Busy(self.conn.clone())
    }

    /// Completes when the table sheds this connection.
    pub async fn shed(&self) {
        self.conn.shed.notified().await;
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        let mut inner = self.table.lock();
        // A shed entry has left the table already; its id is not reused.
        if inner
            .open
            .get(&self.id)
            .is_some_and(|c| Arc::ptr_eq(c, &self.conn))
        {
            inner.open.remove(&self.id);
        }
    }
}

/// A request in flight on a connection.
#[derive(Debug)]
pub struct Busy(Arc<Conn>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its connection busy until it is written and
/// dropped, so that a response being sent is never shed.
#[derive(Debug)]
pub struct Held<B> {
    body: B,
    _busy: Busy,
}

impl<B> Held<B> {
    /// `body`, holding `busy` until it is dropped.
    pub fn new(body: B, busy: Busy) -> Held<B> {
        Held { body, _busy: busy }
    }
}

impl<B: Body + Unpin> Body for Held<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(a: Admission) -> Entry {
        match a {
            Admission::Admitted(e) | Admission::AdmittedShedding(e) => e,
            Admission::Refused => panic!("refused"),
        }
    }

    #[tokio::test]
    async fn at_the_limit_the_oldest_idle_connection_is_shed() {
        let t = Table::new(3);
        let first = admitted(t.admit());
        let second = admitted(t.admit());
        let third = admitted(t.admit());
        assert_eq!(t.len(), 3);
        // The oldest is serving a request: the next oldest, idle, goes.
        let busy = first.busy();
        let fourth = t.admit();
        assert!(matches!(fourth, Admission::AdmittedShedding(_)));
        let fourth = admitted(fourth);
        tokio::time::timeout(std::time::Duration::from_secs(1), second.shed())
            .await
            .expect("the second was told");
        assert_eq!((t.len(), t.shed_total()), (3, 1));
        // Its task ending does not free the newcomer's place.
        drop(second);
        assert_eq!(t.len(), 3);
        // Every connection busy: the newcomer is refused.
        let (b3, b4) = (third.busy(), fourth.busy());
        assert!(matches!(t.admit(), Admission::Refused));
        assert_eq!(t.len(), 3);
        // A response written: its connection is idle and sheddable again.
        drop(busy);
        assert!(matches!(t.admit(), Admission::AdmittedShedding(_)));
        drop((b3, b4, first, third, fourth));
    }

    #[test]
    fn a_body_holds_its_connection_busy_until_dropped() {
        let t = Table::new(1);
        let e = admitted(t.admit());
        let body = Held::new(http_body_util::Full::new(bytes::Bytes::from("x")), e.busy());
        assert!(matches!(t.admit(), Admission::Refused));
        drop(body);
        assert!(matches!(t.admit(), Admission::AdmittedShedding(_)));
    }
}
