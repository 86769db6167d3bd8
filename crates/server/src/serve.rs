//! `allowgate serve`: the listeners, the reload task and their shutdown, in one process.
//!
//! ```no_run
//! # async fn example() -> Result<(), allowgate_server::serve::ServeError> {
//! use allowgate_server::{config::Config, serve};
//! let mut config = Config::default();
//! config.listen.policy = "127.0.0.1:0".parse().unwrap();
//! config.listen.milter = "127.0.0.1:0".parse().unwrap();
//! config.listen.http = "127.0.0.1:0".parse().unwrap();
//! let running = serve::start(&config).await?;
//! println!("policy server on {}", running.policy_addr());
//! running.shutdown().await;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use allowgate_core::{PolicyConfig, Snapshot};
use allowgate_store::{OneTimePassword, Role, Store, StoreOptions, UserName};
use allowgate_types::Actor;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::ApiState;
use crate::config::Config;
use crate::history::{self, History, HistorySettings};
use crate::reload::{self, Shared, StoreSource};
use crate::{http, milterd, policyd};

/// How long shutdown waits for requests in progress before it gives up on them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A listener could not bind its address.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A running server.
#[derive(Debug)]
pub struct Running {
    policy_addr: SocketAddr,
    milter_addr: SocketAddr,
    http_addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    first_admin: Option<(String, OneTimePassword)>,
}

/// The user `serve` creates on a store that has none, so that the admin API and UI can be
/// reached at all.
pub const FIRST_ADMIN: &str = "admin";

/// On a store with no user at all, create [`FIRST_ADMIN`] (role `admin`) and return its
/// one-time password. `None` when users exist, when another node created one at the same
/// moment, or when the store cannot say (the next start tries again).
async fn first_admin(store: &Store) -> Option<(String, OneTimePassword)> {
    match store.list_users().await {
        Ok(users) if users.is_empty() => {}
        Ok(_) => return None,
        Err(e) => {
            tracing::warn!(error = %e, "cannot tell whether the store has users");
            return None;
        }
    }
    let name = UserName::parse(FIRST_ADMIN).ok()?;
    let actor = Actor::parse("serve").ok()?;
    match store.add_user(&name, Role::Admin, None, &actor).await {
        Ok((user, password)) => {
            tracing::info!(user = %user.name, "no user in the store: created the first admin");
            Some((user.name.to_string(), password))
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not create the first admin");
            None
        }
    }
}

/// A listener on `addr` and the address it got (port 0 picks one).
async fn bind(
    what: &'static str,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), ServeError> {
    let error = |source| ServeError::Bind { what, addr, source };
    let listener = TcpListener::bind(addr).await.map_err(error)?;
    let bound = listener.local_addr().map_err(error)?;
    Ok((listener, bound))
}

/// The first snapshot and whether it is the store's: the store's policy if it answers now,
/// else the empty snapshot (no exemption, no block: the configured default), so that the
/// server answers at once.
async fn first_snapshot(store: Option<&Store>, config: &PolicyConfig) -> (Snapshot, bool) {
    if let Some(store) = store {
        match crate::policy::load(store, config, &Default::default()).await {
            Ok(loaded) => {
                for e in &loaded.unreadable {
                    tracing::warn!(entry = %e.id, reason = %e.reason, "entry left out: it does not validate any more");
                }
                for w in &loaded.warnings {
                    tracing::warn!(entry = %w.entry, "{}", w.message);
                }
                tracing::info!(
                    revision = loaded.snapshot.revision(),
                    entries = loaded.snapshot.entry_count(),
                    read_ms = loaded.read.as_millis() as u64,
                    compile_ms = loaded.compile.as_millis() as u64,
                    "serving"
                );
                return (loaded.snapshot, true);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the store; answering with no entries until it can be read");
            }
        }
    }
    let empty = Snapshot::compile(0, config.clone(), &[], [], &Default::default()).0;
    (empty, false)
}

/// Open the store, compile the first snapshot, bind the listeners and start serving. Returns
/// once everything listens; the bound addresses are logged as
/// `listening policy=ADDR milter=ADDR http=ADDR`.
pub async fn start(config: &Config) -> Result<Running, ServeError> {
    let options = StoreOptions {
        busy_timeout: Duration::from_secs_f64(config.store.busy_timeout_s),
    };
    let store = match Store::open_with(&config.store.url, &options).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "store unavailable at start-up; retrying in the background");
            None
        }
    };
    let first_admin = match &store {
        Some(s) => first_admin(s).await,
        None => None,
    };
    let policy_config = config.policy_config();
    let (snapshot, loaded_from_store) = first_snapshot(store.as_ref(), &policy_config).await;
    let (policy_listener, policy_addr) = bind("policy", config.listen.policy).await?;
    let (milter_listener, milter_addr) = bind("milter", config.listen.milter).await?;
    let (http_listener, http_addr) = bind("http", config.listen.http).await?;
    let (shutdown, watcher) = watch::channel(false);
    let mut tasks = Vec::new();
    let source = StoreSource {
        url: config.store.url.clone(),
        options: options.clone(),
    };
    let history = if config.history.enabled {
        let settings = HistorySettings {
            queue: config.history.queue,
            retention: Duration::from_secs(u64::from(config.history.retention_days) * 86_400),
            node: if config.history.node.is_empty() {
                host_name()
            } else {
                config.history.node.clone()
            },
        };
        // The history writer is the last task stopped: it writes what the listeners queued.
        let (history, task) = history::start(settings, source.clone(), watcher.clone());
        tasks.push(task);
        history
    } else {
        History::disabled()
    };
    // The API opens its own store, like the history writer: it answers 503 while it cannot.
    let shared = Arc::new(Shared::new(snapshot, history));
    let api = Arc::new(ApiState::new(source.clone(), Arc::clone(&shared)));
    if loaded_from_store {
        shared.confirm();
    }
    tasks.push(tokio::spawn(reload::run(
        Arc::clone(&shared),
        source,
        store,
        policy_config,
        config.poll_interval(),
        watcher.clone(),
    )));
    tasks.push(tokio::spawn(policyd::serve(
        policy_listener,
        Arc::clone(&shared),
        Arc::new(config.policy_server.clone()),
        watcher.clone(),
    )));
    tasks.push(tokio::spawn(milterd::serve(
        milter_listener,
        Arc::clone(&shared),
        Arc::new(config.milter.clone()),
        watcher.clone(),
    )));
    let mut http_shutdown = watcher.clone();
    let router = http::router(Arc::clone(&shared), Arc::clone(&api));
    tasks.push(tokio::spawn(async move {
        let stop = async move {
            while !*http_shutdown.borrow() {
                if http_shutdown.changed().await.is_err() {
                    break;
                }
            }
        };
        if let Err(e) = axum::serve(http_listener, router)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(error = %e, "http listener failed");
        }
        api.close().await;
    }));
    tracing::info!(
        policy = %policy_addr,
        milter = %milter_addr,
        http = %http_addr,
        "listening"
    );
    Ok(Running {
        policy_addr,
        milter_addr,
        http_addr,
        shared,
        shutdown,
        tasks,
        first_admin,
    })
}

impl Running {
    /// The first admin's name and one-time password, when this start created it (a store
    /// with no user): to be shown once, to the person starting the server, and nowhere else.
    pub fn take_first_admin(&mut self) -> Option<(String, OneTimePassword)> {
        self.first_admin.take()
    }

    /// Where the policy server listens.
    pub fn policy_addr(&self) -> SocketAddr {
        self.policy_addr
    }

    /// Where the milter listens.
    pub fn milter_addr(&self) -> SocketAddr {
        self.milter_addr
    }

    /// Where the HTTP listener listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The state the listeners share (snapshot, counters).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Stop accepting, let requests in progress finish (at most [`SHUTDOWN_GRACE`]), stop the
    /// reload task and close the store.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let all = futures_join(self.tasks);
        if tokio::time::timeout(SHUTDOWN_GRACE, all).await.is_err() {
            tracing::warn!(
                "shutdown: requests still in progress after the grace period were dropped"
            );
        }
    }
}

/// Waits for the tasks, the last first (the listeners, then the reload task, then the history
/// writer, which writes what the listeners queued).
async fn futures_join(tasks: Vec<JoinHandle<()>>) {
    for t in tasks.into_iter().rev() {
        let _ = t.await;
    }
}

/// This machine's name, for history records (`/proc/sys/kernel/hostname`, `$HOSTNAME`, or
/// `allowgate`).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| {
            h.trim()
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .take(64)
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "allowgate".into())
}
