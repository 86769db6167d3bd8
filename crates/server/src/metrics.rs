//! The server's counters, rendered in the Prometheus text format at `GET /metrics`.
//!
//! A few atomics, no global registry: every server in a process (tests run several) has its
//! own, and recording one costs a relaxed atomic add.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use allowgate_core::Status;

/// Upper bounds of the decision-latency histogram buckets, in seconds.
const LATENCY_BUCKETS: [f64; 10] = [
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.005, 0.025,
];

/// Every status, in the order of [`Metrics::decisions`].
const STATUSES: [Status; 7] = [
    Status::Clean,
    Status::Pass,
    Status::Blocked,
    Status::Greylisted,
    Status::Spam,
    Status::Quarantined,
    Status::Rejected,
];

/// The counters of one server.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Policy requests answered (or dropped), by protocol state: RCPT, END-OF-MESSAGE, other.
    policy_requests: [AtomicU64; 3],
    /// Policy connections closed for a protocol error (a bad or over-large request).
    pub protocol_errors: AtomicU64,
    /// Policy connections closed for idling or for a request that did not finish in time.
    pub timeouts: AtomicU64,
    /// Decisions made, by status.
    decisions: [AtomicU64; 7],
    /// Decision latency: counts per bucket (cumulative at render), sum in nanoseconds, count.
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_sum_ns: AtomicU64,
    latency_count: AtomicU64,
    /// Open policy connections.
    pub open_connections: AtomicI64,
    /// Milter connections closed for a protocol error.
    pub milter_protocol_errors: AtomicU64,
    /// Milter connections closed for idling.
    pub milter_timeouts: AtomicU64,
    /// Open milter connections.
    pub milter_connections: AtomicI64,
    /// Snapshots compiled and swapped in after a change.
    pub reloads: AtomicU64,
    /// Reload attempts that failed (store unreachable, read error); the last snapshot is served.
    pub reload_failures: AtomicU64,
}

/// Which counter a policy request goes to.
#[derive(Debug, Clone, Copy)]
pub enum RequestKind {
    /// `protocol_state=RCPT`.
    Rcpt,
    /// `protocol_state=END-OF-MESSAGE`.
    EndOfMessage,
    /// Anything else.
    Other,
}

impl Metrics {
    /// Count a policy request.
    pub fn request(&self, kind: RequestKind) {
        self.policy_requests[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Count a decision and how long it took.
    pub fn decision(&self, status: Status, took: Duration) {
        if let Some(i) = STATUSES.iter().position(|s| *s == status) {
            self.decisions[i].fetch_add(1, Ordering::Relaxed);
        }
        let secs = took.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b) {
            self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.latency_sum_ns.fetch_add(ns, Ordering::Relaxed);
        self.latency_count.fetch_add(1, Ordering::Relaxed);
    }

    /// Decisions made so far with `status`.
    pub fn decisions(&self, status: Status) -> u64 {
        STATUSES
            .iter()
            .position(|s| *s == status)
            .map_or(0, |i| self.decisions[i].load(Ordering::Relaxed))
    }

    /// The Prometheus text exposition, with the snapshot's revision and age (seconds) and
    /// whether the store answered the last poll.
    pub fn render(&self, revision: i64, snapshot_age_s: f64, store_ok: bool) -> String {
        self.render_with(revision, snapshot_age_s, store_ok, None)
    }

    /// [`Metrics::render`] plus the history's queue depth and counters.
    pub fn render_with(
        &self,
        revision: i64,
        snapshot_age_s: f64,
        store_ok: bool,
        history: Option<&crate::history::History>,
    ) -> String {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::with_capacity(4096);
        let header = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        header(
            &mut out,
            "allowgate_policy_requests_total",
            "counter",
            "Postfix policy requests, by protocol state.",
        );
        for (state, i) in [("rcpt", 0), ("end_of_message", 1), ("other", 2)] {
            let _ = writeln!(
                out,
                "allowgate_policy_requests_total{{state=\"{state}\"}} {}",
                load(&self.policy_requests[i])
            );
        }
        header(
            &mut out,
            "allowgate_decisions_total",
            "counter",
            "Decisions made, by status.",
        );
        for (i, status) in STATUSES.iter().enumerate() {
            let _ = writeln!(
                out,
                "allowgate_decisions_total{{status=\"{status}\"}} {}",
                load(&self.decisions[i])
            );
        }
        header(
            &mut out,
            "allowgate_decision_seconds",
            "histogram",
            "Time to decide, from a parsed request to the reply.",
        );
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += load(&self.latency_buckets[i]);
            let _ = writeln!(
                out,
                "allowgate_decision_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = load(&self.latency_count);
        let _ = writeln!(
            out,
            "allowgate_decision_seconds_bucket{{le=\"+Inf\"}} {count}\n\
             allowgate_decision_seconds_sum {}\nallowgate_decision_seconds_count {count}",
            load(&self.latency_sum_ns) as f64 / 1e9
        );
        for (name, kind, help, value) in [
            (
                "allowgate_policy_protocol_errors_total",
                "counter",
                "Policy connections closed for a bad or over-large request.",
                load(&self.protocol_errors) as f64,
            ),
            (
                "allowgate_policy_timeouts_total",
                "counter",
                "Policy connections closed for idling or an unfinished request.",
                load(&self.timeouts) as f64,
            ),
            (
                "allowgate_policy_connections",
                "gauge",
                "Open policy connections.",
                self.open_connections.load(Ordering::Relaxed) as f64,
            ),
            (
                "allowgate_milter_protocol_errors_total",
                "counter",
                "Milter connections closed for a protocol error.",
                load(&self.milter_protocol_errors) as f64,
            ),
            (
                "allowgate_milter_timeouts_total",
                "counter",
                "Milter connections closed for idling.",
                load(&self.milter_timeouts) as f64,
            ),
            (
                "allowgate_milter_connections",
                "gauge",
                "Open milter connections.",
                self.milter_connections.load(Ordering::Relaxed) as f64,
            ),
            (
                "allowgate_reloads_total",
                "counter",
                "Snapshots compiled and swapped in after a change.",
                load(&self.reloads) as f64,
            ),
            (
                "allowgate_reload_failures_total",
                "counter",
                "Reload attempts that failed; the last snapshot stays in service.",
                load(&self.reload_failures) as f64,
            ),
            (
                "allowgate_snapshot_revision",
                "gauge",
                "Configuration revision being served.",
                revision as f64,
            ),
            (
                "allowgate_snapshot_age_seconds",
                "gauge",
                "Seconds since the served snapshot was last confirmed current.",
                snapshot_age_s,
            ),
            (
                "allowgate_store_up",
                "gauge",
                "1 when the store answered the last poll.",
                if store_ok { 1.0 } else { 0.0 },
            ),
        ] {
            header(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        }
        if let Some(h) = history {
            let m = h.metrics();
            for (name, kind, help, value) in [
                (
                    "allowgate_history_queue",
                    "gauge",
                    "Decisions waiting to be written to the history.",
                    h.queue_depth() as u64,
                ),
                (
                    "allowgate_history_written_total",
                    "counter",
                    "History records written.",
                    load(&m.written),
                ),
                (
                    "allowgate_history_dropped_total",
                    "counter",
                    "Decisions not recorded because the history queue was full.",
                    load(&m.dropped),
                ),
                (
                    "allowgate_history_write_failures_total",
                    "counter",
                    "History batches the store refused or could not take (their records are lost).",
                    load(&m.write_failures),
                ),
                (
                    "allowgate_history_invalid_total",
                    "counter",
                    "History records the store would not keep, dropped alone.",
                    load(&m.invalid),
                ),
            ] {
                header(&mut out, name, kind, help);
                let _ = writeln!(out, "{name} {value}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let m = Metrics::default();
        m.request(RequestKind::Rcpt);
        m.decision(Status::Clean, Duration::from_micros(3));
        m.decision(Status::Blocked, Duration::from_micros(300));
        let text = m.render(7, 1.5, true);
        assert!(
            text.contains("allowgate_policy_requests_total{state=\"rcpt\"} 1"),
            "{text}"
        );
        assert!(text.contains("allowgate_decisions_total{status=\"clean\"} 1"));
        assert!(text.contains("allowgate_decision_seconds_bucket{le=\"0.000005\"} 1"));
        assert!(text.contains("allowgate_decision_seconds_bucket{le=\"0.0005\"} 2"));
        assert!(text.contains("allowgate_decision_seconds_count 2"));
        assert!(text.contains("allowgate_snapshot_revision 7"));
        assert!(text.contains("allowgate_store_up 1"));
        // Every sample follows its own HELP and TYPE lines.
        let helps = text.lines().filter(|l| l.starts_with("# HELP")).count();
        let types = text.lines().filter(|l| l.starts_with("# TYPE")).count();
        assert_eq!(helps, types);
        assert_eq!(helps, 14);
    }
}
