//! The cycle lease: one tick at a time, across processes and hosts sharing the store.
//!
//! Owns the lease document: who holds it and until when (the tick's deadline plus a margin). A
//! tick that finds a live lease of another owner does nothing; an expired lease is taken over,
//! so a tick that died never blocks the next ones for longer than its deadline. The store has no
//! compare-and-swap, so taking is write-then-read-back: of two ticks racing within one KV round
//! trip, the last writer wins and the other backs off when it reads back. It must not know what
//! a tick does.

use serde::{Deserialize, Serialize};

use crate::host::{KeyValue, KvError, Log};
use crate::state::{self, LEASE_KEY};

/// The lease document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub owner: String,
    pub expires_at_ms: i64,
}

/// The result of trying to take the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// This tick holds the lease.
    Held,
    /// Another live tick holds it, until `expires_at_ms`.
    Busy { owner: String, expires_at_ms: i64 },
}

/// Takes the lease for `owner` until `expires_at_ms`, unless someone else holds a live one.
pub async fn take<S: KeyValue + Log>(
    store: &S,
    owner: &str,
    now_ms: i64,
    expires_at_ms: i64,
) -> Result<Taken, KvError> {
    let current: Lease = state::load(store, LEASE_KEY).await?;
    if current.owner != owner && current.expires_at_ms > now_ms {
        return Ok(Taken::Busy {
            owner: current.owner,
            expires_at_ms: current.expires_at_ms,
        });
    }
    let mine = Lease {
        owner: owner.to_owned(),
        expires_at_ms,
    };
    state::save(store, LEASE_KEY, &mine).await?;
    let read_back: Lease = state::load(store, LEASE_KEY).await?;
    if read_back.owner == owner {
        Ok(Taken::Held)
    } else {
        Ok(Taken::Busy {
            owner: read_back.owner,
            expires_at_ms: read_back.expires_at_ms,
        })
    }
}

/// Gives the lease back if this owner still holds it.
pub async fn release<S: KeyValue + Log>(store: &S, owner: &str) -> Result<(), KvError> {
    let current: Lease = state::load(store, LEASE_KEY).await?;
    if current.owner == owner {
        store.kv_delete(LEASE_KEY).await?;
    }
    Ok(())
}
