//! The email history: every decision recorded, off the decision path.
//!
//! A listener hands each decision's inputs — the snapshot it used (an `Arc`), the context and
//! the check results — to a bounded queue with `try_send`, which never waits: mail never waits
//! for history. A full queue drops the event and counts it (`allowgate_history_dropped_total`),
//! it does not hide it. One task takes events off the queue, rebuilds each decision's whole
//! explanation from its inputs (the engine is deterministic: same snapshot, same context, same
//! verdict) and writes batches of up to [`BATCH`] records in one transaction each. It also
//! deletes records older than the retention, hourly. At shutdown it writes what is queued.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use allowgate_core::{CheckResults, Context, Snapshot, Verdict, decide, exemptions};
use allowgate_store::{HistoryMatch, HistoryRecord, Store};
use tokio::sync::{mpsc, watch};

use crate::reload::StoreSource;

/// Records written per transaction at most.
pub const BATCH: usize = 500;
/// A batch is written at the latest this long after its first record arrived.
const FLUSH_AFTER: Duration = Duration::from_millis(200);
/// Retention runs this often.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Where in the mail flow a decision was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// At `RCPT`, by the policy server, for one recipient.
    Rcpt,
    /// For the whole message, by the milter.
    Message,
}

impl Stage {
    /// `rcpt` or `message`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Rcpt => "rcpt",
            Stage::Message => "message",
        }
    }
}

/// One decision's inputs.
#[derive(Debug)]
pub struct Event {
    /// The snapshot that decided.
    pub snapshot: Arc<Snapshot>,
    /// The context it decided on.
    pub context: Context,
    /// The checks' results it decided with.
    pub results: CheckResults,
    /// Postfix's queue id, when known.
    pub queue_id: Option<String>,
    /// Where in the mail flow.
    pub stage: Stage,
}

/// The counters of the history.
#[derive(Debug, Default)]
pub struct HistoryMetrics {
    /// Records written.
    pub written: AtomicU64,
    /// Events dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Batches that could not be written (the store failed); their records are lost.
    pub write_failures: AtomicU64,
    /// Records the store would not keep even cut down (dropped alone, not with their batch).
    pub invalid: AtomicU64,
}

/// The sending side, held by the listeners.
#[derive(Debug, Clone)]
pub struct History {
    sender: Option<mpsc::Sender<Event>>,
    metrics: Arc<HistoryMetrics>,
}

impl History {
    /// A history that records nothing (for tests and `history.enabled = false`).
    pub fn disabled() -> History {
        History {
            sender: None,
            metrics: Arc::new(HistoryMetrics::default()),
        }
    }

    /// Queue a decision's inputs; never waits.
    pub fn record(&self, event: Event) {
        if let Some(sender) = &self.sender
            && sender.try_send(event).is_err()
        {
            self.metrics.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Events waiting to be written.
    pub fn queue_depth(&self) -> usize {
        self.sender
            .as_ref()
            .map_or(0, |s| s.max_capacity() - s.capacity())
    }

    /// The counters.
    pub fn metrics(&self) -> &HistoryMetrics {
        &self.metrics
    }
}

/// Settings of the writer.
#[derive(Debug, Clone)]
pub struct HistorySettings {
    /// Events queued at most.
    pub queue: usize,
    /// Records older than this are deleted.
    pub retention: Duration,
    /// This gateway's name in the records.
    pub node: String,
}

/// Start the writer; returns the sending side and the task (which ends after `shutdown`,
/// once it has written what was queued).
pub fn start(
    settings: HistorySettings,
    source: StoreSource,
    shutdown: watch::Receiver<bool>,
) -> (History, tokio::task::JoinHandle<()>) {
    let (sender, receiver) = mpsc::channel(settings.queue.max(1));
    let metrics = Arc::new(HistoryMetrics::default());
    let history = History {
        sender: Some(sender),
        metrics: Arc::clone(&metrics),
    };
    let task = tokio::spawn(writer(receiver, settings, source, metrics, shutdown));
    (history, task)
}

async fn writer(
    mut receiver: mpsc::Receiver<Event>,
    settings: HistorySettings,
    source: StoreSource,
    metrics: Arc<HistoryMetrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut store: Option<Store> = None;
    let mut batch: Vec<HistoryRecord> = Vec::with_capacity(BATCH);
    let mut purge = tokio::time::interval(PURGE_EVERY);
    let mut flush = tokio::time::interval(FLUSH_AFTER);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stopping = false;
    loop {
        tokio::select! {
            event = receiver.recv() => match event {
                Some(event) => {
                    batch.push(record(&event, &settings.node));
                    if batch.len() < BATCH {
                        continue;
                    }
                }
                None => stopping = true,
            },
            _ = flush.tick() => {}
            _ = purge.tick() => {
                if let Some(s) = connect(&mut store, &source).await {
                    let cutoff = chrono::Utc::now()
                        - chrono::Duration::from_std(settings.retention).unwrap_or_default();
                    match s.purge_history(cutoff).await {
                        Ok(n) if n > 0 => tracing::info!(deleted = n, "history retention"),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "history retention failed"),
                    }
                }
            }
            _ = shutdown.changed(), if !stopping => {
                // Take what is queued, then stop.
                receiver.close();
            }
        }
        if !batch.is_empty() {
            write(&mut store, &source, &mut batch, &metrics).await;
        }
        if stopping {
            break;
        }
    }
    if let Some(s) = store {
        s.close().await;
    }
}

async fn connect<'s>(store: &'s mut Option<Store>, source: &StoreSource) -> Option<&'s Store> {
    if store.is_none() {
        match Store::open_with(&source.url, &source.options).await {
            Ok(s) => *store = Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "history: store unavailable");
                return None;
            }
        }
    }
    store.as_ref()
}

async fn write(
    store: &mut Option<Store>,
    source: &StoreSource,
    batch: &mut Vec<HistoryRecord>,
    metrics: &HistoryMetrics,
) {
    // A record the store would refuse is dropped alone (and counted), not with its batch.
    batch.retain(|r| match r.validate() {
        Ok(()) => true,
        Err(e) => {
            metrics.invalid.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, queue_id = r.queue_id.as_deref().unwrap_or("-"), "history record not kept");
            false
        }
    });
    if batch.is_empty() {
        return;
    }
    let n = batch.len() as u64;
    let result = match connect(store, source).await {
        Some(s) => s.record_history(batch).await.map_err(|e| e.to_string()),
        None => Err("store unavailable".into()),
    };
    match result {
        Ok(()) => {
            metrics.written.fetch_add(n, Ordering::Relaxed);
        }
        Err(e) => {
            metrics.write_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, records = n, "history batch lost");
        }
    }
    batch.clear();
}

/// Recipients kept in a record; the rest are counted in a last item `(+N more)`.
pub const RECORD_RECIPIENTS: usize = 100;
/// Matched entries kept in a record when it is too big for the store otherwise.
const RECORD_MATCHES: usize = 32;

/// The record of one decision: its whole explanation, rebuilt from its inputs, cut to what
/// the store keeps (a message with a thousand long recipient addresses must not make the
/// store refuse the batch, and with it other messages' records).
pub fn record(event: &Event, node: &str) -> HistoryRecord {
    let found = exemptions(&event.snapshot, &event.context);
    let verdict = decide(&found, &event.results).verdict();
    let mut record = from_verdict(&verdict, event, node);
    if record.recipients.len() > RECORD_RECIPIENTS {
        let more = record.recipients.len() - RECORD_RECIPIENTS;
        record.recipients.truncate(RECORD_RECIPIENTS);
        record.recipients.push(format!("(+{more} more)"));
    }
    // Validating encodes the record: only when cutting the matches could still help.
    if record.matched.len() > RECORD_MATCHES && record.validate().is_err() {
        record.matched.truncate(RECORD_MATCHES);
    }
    record
}

fn from_verdict(v: &Verdict, event: &Event, node: &str) -> HistoryRecord {
    HistoryRecord {
        time: event.context.now,
        node: node.to_string(),
        queue_id: event.queue_id.clone().filter(|q| !q.is_empty()),
        tenant: v.tenant.as_ref().map(ToString::to_string),
        client_ip: v.client_ip.to_string(),
        sender: v.sender.as_ref().map(ToString::to_string),
        sender_source: v.sender_source.map(|s| s.to_string()),
        recipients: v.recipients.iter().map(|r| r.address.to_string()).collect(),
        status: v.status.to_string(),
        action: v.action.to_string(),
        stage: event.stage.as_str().into(),
        bypassed: v.bypassed.iter().map(ToString::to_string).collect(),
        matched: v
            .matched
            .iter()
            .map(|m| HistoryMatch {
                id: m.id.0,
                list: m.list.to_string(),
                kind: m.kind.to_string(),
                value: m.value.to_string(),
                scope: m.scope.to_string(),
                checks: m.checks.iter().map(|c| c.to_string()).collect(),
                matched_on: m.matched_on.clone(),
                applied: m.applied,
            })
            .collect(),
        checks: v
            .checks
            .iter()
            .map(|(c, o)| (c.to_string(), o.to_string()))
            .collect(),
        reason: v.reason(),
        revision: v.revision,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use allowgate_core::PolicyConfig;
    use allowgate_types::EmailAddress;

    /// A message to a thousand long addresses: its record is cut to what the store keeps, so
    /// that it cannot make the store refuse the batch it is in.
    #[test]
    fn a_record_is_cut_to_what_the_store_keeps() {
        let (snapshot, _) = Snapshot::compile(
            1,
            PolicyConfig::default(),
            &[],
            Vec::new(),
            &Default::default(),
        );
        let recipients: Vec<EmailAddress> = (0..1000)
            .map(|i| {
                let (local, label) = ("r".repeat(60), "d".repeat(60));
                EmailAddress::parse(&format!("{local}{i}@{label}.{label}.example.test")).unwrap()
            })
            .collect();
        let context = Context::new(chrono::Utc::now(), "192.0.2.1".parse().unwrap(), recipients);
        let event = Event {
            snapshot: Arc::new(snapshot),
            context,
            results: CheckResults::new(),
            queue_id: Some("4FJK2Q1xyz".into()),
            stage: Stage::Message,
        };
        let full = from_verdict(
            &decide(&exemptions(&event.snapshot, &event.context), &event.results).verdict(),
            &event,
            "gw1",
        );
        assert!(
            full.validate().is_err(),
            "the uncut record should be too big"
        );
        let r = record(&event, "gw1");
        r.validate().unwrap();
        assert_eq!(r.recipients.len(), RECORD_RECIPIENTS + 1);
        assert_eq!(r.recipients.last().unwrap(), "(+900 more)");
        assert!(r.recipients[0].starts_with("rrrr"));
    }
}
