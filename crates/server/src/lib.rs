//! allowgate's application library, shared by the `allowgate` binary (thin: argument parsing
//! and printing) and the server: the one consistent [policy load](policy::load) a snapshot is
//! compiled from, and [evaluation requests](evaluate::EvaluateRequest) as `check` and the HTTP
//! API take them.
//!
//! ```
//! use allowgate_server::{evaluate::EvaluateRequest, policy};
//! use allowgate_store::Store;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let store = Store::open("sqlite::memory:").await.unwrap();
//! let loaded = policy::load(&store, &Default::default(), &Default::default()).await.unwrap();
//! let request = EvaluateRequest {
//!     ip: "192.0.2.7".into(),
//!     rcpt: vec!["bob@example.com".into()],
//!     ..Default::default()
//! };
//! let verdict = request.evaluate(&loaded.snapshot, chrono::Utc::now()).unwrap();
//! assert_eq!(verdict.status.to_string(), "pass");
//! # });
//! ```
#![deny(missing_docs)]

pub mod api;
pub mod config;
pub mod evaluate;
pub mod history;
pub mod http;
mod listener;
pub mod metrics;
pub mod milterd;
pub mod policy;
pub mod policyd;
pub mod reload;
pub mod serve;
