//! A value a configuration reload replaces while the listeners keep reading it.
//!
//! Readers take the lock only to clone the pointer and then work with their own
//! snapshot, so a request that began under the old configuration finishes under it;
//! the reload holds the write lock only for the swap.

use std::sync::{Arc, PoisonError, RwLock};

/// The current value of something a reload can replace.
#[derive(Debug)]
pub struct Live<T>(RwLock<Arc<T>>);

impl<T> Live<T> {
    /// Starts with `value`.
    pub fn new(value: Arc<T>) -> Self {
        Self(RwLock::new(value))
    }

    /// The current snapshot.
    pub fn load(&self) -> Arc<T> {
        Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Replaces the value; returns the one it replaced.
    pub fn store(&self, value: Arc<T>) -> Arc<T> {
        std::mem::replace(&mut *self.0.write().unwrap_or_else(PoisonError::into_inner), value)
    }
}
