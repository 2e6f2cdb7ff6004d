//! Counting open supervisor sockets, in all and per token, so one leaked token (or one
//! runaway dashboard) cannot take every socket the hub can hold.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashMap;

#[derive(Default)]
pub struct Sockets {
    total: AtomicUsize,
    per_token: DashMap<String, usize>,
}

/// Held by an open socket; frees its place when dropped.
pub struct SocketPlace {
    sockets: Arc<Sockets>,
    token_id: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    HubFull,
    TokenFull,
}

impl Sockets {
    pub fn admit(self: &Arc<Self>, token_id: &str, max_total: usize, max_per_token: usize) -> Result<SocketPlace, Refused> {
        if self.total.fetch_add(1, Ordering::AcqRel) >= max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::HubFull);
        }
        let mut n = self.per_token.entry(token_id.to_string()).or_insert(0);
        if *n >= max_per_token {
            drop(n);
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::TokenFull);
        }
        *n += 1;
        Ok(SocketPlace { sockets: self.clone(), token_id: token_id.to_string() })
    }

    pub fn open(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }
}

impl Drop for SocketPlace {
    fn drop(&mut self) {
        self.sockets.per_token.remove_if_mut(&self.token_id, |_, n| {
            *n = n.saturating_sub(1);
            *n == 0
        });
        self.sockets.total.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_gets_its_share_and_places_come_back_when_sockets_close() {
        let s = Arc::new(Sockets::default());
        let a1 = s.admit("a", 10, 2).unwrap();
        let _a2 = s.admit("a", 10, 2).unwrap();
        assert_eq!(s.admit("a", 10, 2).err(), Some(Refused::TokenFull));
        let _b = s.admit("b", 10, 2).unwrap();
        drop(a1);
        let _a3 = s.admit("a", 10, 2).unwrap();
        assert_eq!(s.open(), 3, "the refused attempts hold nothing");
    }

    #[test]
    fn the_hub_wide_cap_applies_across_tokens() {
        let s = Arc::new(Sockets::default());
        let _a = s.admit("a", 1, 5).unwrap();
        assert_eq!(s.admit("b", 1, 5).err(), Some(Refused::HubFull));
        assert_eq!(s.open(), 1);
    }
}
