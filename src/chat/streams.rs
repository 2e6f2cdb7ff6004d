//! How many SSE streams follow one session at once on this instance. Each holds a broker
//! subscription, a connection and its buffers; a session id in many hands (a shared link, a
//! script) must not hold thousands of them. A stream's slot is given back when its response
//! body is dropped (the client left, or the answer ended).

use std::sync::Arc;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

pub struct StreamSlots {
    max: usize,
    open: Arc<DashMap<String, usize>>,
}

/// One open stream of a session; dropping it frees the place.
pub struct StreamSlot {
    open: Arc<DashMap<String, usize>>,
    session: String,
}

impl StreamSlots {
    pub fn new(max: usize) -> Self {
        Self { max, open: Arc::new(DashMap::new()) }
    }

    /// A place for one more stream of `session_id`, or `None` when it has its maximum.
    pub fn take(&self, session_id: &str) -> Option<StreamSlot> {
        let mut n = self.open.entry(session_id.to_string()).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(StreamSlot { open: self.open.clone(), session: session_id.to_string() })
    }

    #[cfg(test)]
    fn sessions(&self) -> usize {
        self.open.len()
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        // Sessions with no stream leave the map: it holds only sessions being watched now.
        if let Entry::Occupied(mut e) = self.open.entry(std::mem::take(&mut self.session)) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_gets_its_maximum_of_places_and_a_dropped_one_comes_back() {
        let slots = StreamSlots::new(2);
        let (a, b) = (slots.take("s1").unwrap(), slots.take("s1").unwrap());
        assert!(slots.take("s1").is_none());
        assert!(slots.take("s2").is_some(), "another session has its own places");
        drop(a);
        let c = slots.take("s1").expect("a dropped place is given back");
        drop((b, c));
        assert_eq!(slots.sessions(), 0, "a session nobody watches is forgotten");
    }
}
