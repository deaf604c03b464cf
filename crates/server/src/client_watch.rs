//! Brings clients added, changed or deleted in `clients.db` (by the CLI or the portal,
//! from another process) into the live client table within a second: a thread reads the
//! store's generation every 250 ms and, when it moved, loads the clients and swaps the
//! table as a reload does. The listeners never wait for it.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_storage::{ClientStore, SqliteClients, StorageError};

use crate::clients::{ClientTable, StoredClients};
use crate::live::Live;

/// How often the generation is read.
pub const POLL: Duration = Duration::from_millis(250);

/// The stored clients with their secrets, for the table.
pub fn load(store: &SqliteClients) -> Result<StoredClients, StorageError> {
    Ok(Arc::new(store.clients_with_secrets()?))
}

/// The watching thread; dropping it (the server shutting down) stops the thread.
#[derive(Debug)]
pub struct ClientWatch {
    stop: Option<Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ClientWatch {
    /// Starts watching `store`, whose generation was `seen` when the table was built.
    /// `swap` is held while a table is built and stored, by the reload as well, so
    /// neither undoes the other's change.
    pub fn spawn(
        store: SqliteClients,
        seen: i64,
        table: Arc<Live<ClientTable>>,
        swap: Arc<Mutex<()>>,
    ) -> std::io::Result<Self> {
        let (stop, stopped) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("client-watch".into())
            .spawn(move || watch(&store, Some(seen), &table, &swap, &stopped))?;
        Ok(Self { stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for ClientWatch {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn watch(
    store: &SqliteClients,
    mut seen: Option<i64>,
    table: &Live<ClientTable>,
    swap: &Mutex<()>,
    stopped: &Receiver<()>,
) {
    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(POLL) {
        let loaded = store.generation().and_then(|g| {
            if seen == Some(g) {
                return Ok(None);
            }
            // The generation is read first: a change committed in between is seen again
            // at the next poll, never missed.
            load(store).map(|clients| Some((g, clients)))
        });
        let (generation, clients) = match loaded {
            Ok(Some(x)) => x,
            Ok(None) => continue,
            Err(e) => {
                // What is stored is unknown: a client deleted there must not keep sending.
                // The file's clients stay; the stored ones come back once it reads again.
                if seen.is_some() {
                    tracing::error!(error = %e, "cannot read clients.db; stored RADIUS clients are off until it reads");
                    let _guard = crate::lock(swap);
                    table.store(Arc::new(table.load().with_stored(Arc::default())));
                }
                seen = None;
                continue;
            }
        };
        let _guard = crate::lock(swap);
        let next = table.load().with_stored(clients);
        tracing::info!(
            generation,
            stored = next.stored().len(),
            "stored RADIUS clients changed; the client table is replaced"
        );
        table.store(Arc::new(next));
        seen = Some(generation);
    }
}
