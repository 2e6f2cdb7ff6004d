//! OpenAI's `safety_identifier`: who, on the hub's side, asked for a completion, so that the
//! provider can act on one abusive visitor instead of suspending the hub's key. The value is a
//! keyed hash (HMAC-SHA256, hex: 64 characters, the field's limit), never the session id, the
//! client's address or the token itself.
//!
//! The key is one the provider never sees (`chat.safety_secret`), not the model API key: with a
//! key it holds, it could hash every IPv4 address in minutes and read the stateless route's
//! clients back. Without a configured secret each process draws its own, so names are stable
//! per instance and change with a restart.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Who asked; each kind is hashed in its own namespace, so a session id can never collide with
/// an address or a token id.
#[derive(Debug, Clone, Copy)]
pub enum Asker<'a> {
    /// A chat session (the widget's visitor).
    Session(&'a str),
    /// A stateless `/api/ai/chat` client, by its rate-limit key (IPv6 by /64).
    Client(&'a str),
    /// A caller of the pass-through, by its API token's id.
    Token(&'a str),
}

pub struct SafetyIds {
    /// The keyed MAC, ready: each identifier clones it instead of deriving the key again.
    mac: Option<Hmac<Sha256>>,
}

impl SafetyIds {
    /// `secret` is `chat.safety_secret`; `enabled` is `chat.safety_identifier`.
    pub fn new(secret: Option<&str>, enabled: bool) -> Self {
        let key = match secret {
            Some(s) => s.as_bytes().to_vec(),
            None => [uuid::Uuid::new_v4().into_bytes(), uuid::Uuid::new_v4().into_bytes()].concat(),
        };
        // HMAC takes a key of any length: this never fails.
        Self { mac: enabled.then(|| Hmac::<Sha256>::new_from_slice(&key).ok()).flatten() }
    }

    /// The identifier to send, or `None` when the setting is off.
    pub fn of(&self, who: Asker<'_>) -> Option<String> {
        let mut mac = self.mac.clone()?;
        let (kind, id) = match who {
            Asker::Session(id) => ("session", id),
            Asker::Client(id) => ("client", id),
            Asker::Token(id) => ("token", id),
        };
        mac.update(kind.as_bytes());
        mac.update(b":");
        mac.update(id.as_bytes());
        Some(hex::encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identifier_is_64_hex_characters_stable_and_never_the_raw_id() {
        let ids = SafetyIds::new(Some("hub-secret"), true);
        let a = ids.of(Asker::Session("3f1c-session")).unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(!a.contains("3f1c"));
        assert_eq!(ids.of(Asker::Session("3f1c-session")), Some(a.clone()), "the same visitor, the same name");
        assert_ne!(ids.of(Asker::Session("another")), Some(a.clone()));
    }

    #[test]
    fn kinds_and_keys_name_apart() {
        let ids = SafetyIds::new(Some("hub-secret"), true);
        let session = ids.of(Asker::Session("x"));
        assert_ne!(session, ids.of(Asker::Client("x")));
        assert_ne!(session, ids.of(Asker::Token("x")));
        assert_ne!(session, SafetyIds::new(Some("other-secret"), true).of(Asker::Session("x")), "a new secret, new names");
        // Without a secret each process keys its own: nobody else can reproduce the names.
        assert_ne!(
            SafetyIds::new(None, true).of(Asker::Client("203.0.113.7")),
            SafetyIds::new(None, true).of(Asker::Client("203.0.113.7"))
        );
    }

    #[test]
    fn switched_off_nothing_is_sent() {
        assert_eq!(SafetyIds::new(Some("hub-secret"), false).of(Asker::Session("x")), None);
    }
}
