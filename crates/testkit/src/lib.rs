//! Test harness for allowgate's integration tests: a private, **real** Postfix instance on
//! loopback, the smtp-sink it relays to, and helpers to send mail (swaks) and look at what
//! happened (sink files, queue, maillog). Synchronous: plain `std::process`, no async runtime.
//!
//! Use it as a dev-dependency only (`allowgate-testkit.workspace = true` under
//! `[dev-dependencies]`).
//!
//! ```no_run
//! use std::time::Duration;
//! use allowgate_testkit::{Mail, Postfix, PostfixConfig};
//!
//! // allowgate's policy server, started by the test, listens here:
//! let policy: std::net::SocketAddr = "127.0.0.1:10040".parse().unwrap();
//! let postfix = Postfix::require(PostfixConfig::default().with_policy(policy));
//!
//! let sent = postfix.send(
//!     &Mail::new("alice@sender.test", ["bob@example.test"])
//!         .client("203.0.113.9".parse().unwrap())
//!         .helo("mx.sender.test"),
//! );
//! assert!(sent.is_queued(), "{sent}");
//!
//! let delivered = postfix.wait_delivered(1, Duration::from_secs(10));
//! assert_eq!(delivered.len(), 1, "{}", postfix.diagnostics());
//! assert_eq!(delivered[0].header_all("X-Allowgate").len(), 1);
//! ```
//!
//! # What a test author must know
//!
//! - **Run as root, with Debian's `postfix` and `swaks` installed** (`scripts/test` installs
//!   them). Postfix's master only starts as root.
//! - **Never skip.** [`Postfix::start`] returns an [`Error`] that names what is missing or
//!   which log to read; [`Postfix::require`] panics with it. A test that cannot start its
//!   Postfix fails, with or without `CI=true`. Do not turn an `Err` into an early `return`.
//! - **Instances are independent**: own directory under `$TMPDIR/allowgate-testkit/`, own ports
//!   (free ports picked at start; a port taken in between is detected by the banner and another
//!   is picked), own master. Parallel tests (nextest's processes, or threads) need nothing
//!   special. Start one per test; starting takes about 0.2–0.5 s.
//! - **Cleanup is by PID**: dropping the [`Postfix`] stops its master, its daemons and its
//!   smtp-sink, also when the test panics (the maillog's tail is printed then). Keep the value
//!   alive for the whole test (`let _postfix = …`, not `let _ = …`). Instances of a test process
//!   that was killed are stopped by the next start. Set [`KEEP_ENV`] to keep directories.
//! - **The instance**: `myhostname = gw.example.test`, `mynetworks = 192.0.2.0/32` (loopback is
//!   *not* trusted, so mail from the test goes through the policy service and the milter),
//!   `relay_domains` (default `example.test`) relayed to the sink, every other domain refused
//!   at `RCPT` with `554 5.7.1 <…>: Relay access denied`. XCLIENT is allowed from 127.0.0.0/8:
//!   [`Mail::client`] makes Postfix, the policy service and the milter see any client address.
//! - **Policy service** ([`PostfixConfig::policy`]): asked at `RCPT` and at `END-OF-MESSAGE`,
//!   `default_action=DUNNO`, `timeout` [`PostfixConfig::policy_timeout`] (10 s). With nothing
//!   listening, mail still flows, but each check costs about 1 s (Postfix tries twice, 1 s
//!   apart; 1 s is its minimum `retry_delay`), so about 2 s per message. `REJECT text` at RCPT
//!   gives `554 5.7.1 <rcpt>: Recipient address rejected: text`; `HOLD text` puts the message in
//!   the hold queue ([`Postfix::hold_queue`]) after `250 queued`.
//! - **Milter** ([`PostfixConfig::milter`]): `milter_default_action = accept`, protocol 6.
//! - **Results**: [`SendResult`] has every reply (`rcpt`, `data`, `end_of_data`, …) and
//!   prints its transcript; [`Postfix::wait_delivered`] returns the sink's messages with their
//!   headers ([`DeliveredMessage::header`]); [`Postfix::maillog`] and
//!   [`Postfix::wait_for_log`] read the instance's log; [`Postfix::diagnostics`] is the text
//!   to put in an assertion message.
//! - **Changing the configuration**: [`Postfix::set_policy`], [`Postfix::set_milter`],
//!   [`Postfix::reconfigure`] rewrite the config and reload; the next connection uses it.
//!   Extra settings: [`PostfixConfig::main_cf`], [`PostfixConfig::master_cf`].

#![deny(missing_docs)]

mod config;
mod error;
mod mail;
mod postfix;
mod sink;
mod swaks;
mod sys;

pub use config::{MYHOSTNAME, PostfixConfig};
pub use error::{Error, Result};
pub use mail::{DEFAULT_HELO, Mail};
pub use postfix::{KEEP_ENV, Postfix, QueuedMessage};
pub use sink::DeliveredMessage;
pub use swaks::{Exchange, RcptReply, Reply, SendResult};
