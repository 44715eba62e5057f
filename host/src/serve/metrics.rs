//! The Prometheus metrics of `wxnotify serve`, one registry per server (so several servers in
//! one process, as in tests, do not share counters).

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// The counters and gauges `/metrics` exposes.
#[derive(Clone)]
pub(crate) struct Metrics {
    registry: Registry,
    /// `wxnotify_sends_total{tenant,channel,outcome}`: outcome delivered | failed | retried.
    pub(crate) sends: IntCounterVec,
    /// `wxnotify_token_fetches_total{tenant}`: egress to `/cgi-bin/token` or `/cgi-bin/stable_token`.
    pub(crate) token_fetches: IntCounterVec,
    /// `wxnotify_send_duration_seconds`: one component call of a worker.
    pub(crate) send_duration: Histogram,
    /// `wxnotify_outbox_queued{tenant}`, refreshed at scrape.
    pub(crate) queued: IntGaugeVec,
    /// `wxnotify_outbox_in_flight`, refreshed at scrape.
    pub(crate) in_flight: IntGauge,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let sends = IntCounterVec::new(
            Opts::new(
                "wxnotify_sends_total",
                "Notifications the workers settled, by outcome (delivered, failed, retried)",
            ),
            &["tenant", "channel", "outcome"],
        )
        .expect("valid metric");
        let token_fetches = IntCounterVec::new(
            Opts::new(
                "wxnotify_token_fetches_total",
                "Access-token requests to WeChat (/cgi-bin/token, /cgi-bin/stable_token)",
            ),
            &["tenant"],
        )
        .expect("valid metric");
        let send_duration = Histogram::with_opts(
            HistogramOpts::new(
                "wxnotify_send_duration_seconds",
                "Time of one send attempt (one component call)",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
        )
        .expect("valid metric");
        let queued = IntGaugeVec::new(
            Opts::new(
                "wxnotify_outbox_queued",
                "Messages waiting in the outbox (due or not)",
            ),
            &["tenant"],
        )
        .expect("valid metric");
        let in_flight = IntGauge::new(
            "wxnotify_outbox_in_flight",
            "Messages leased to workers (of every server sharing the outbox)",
        )
        .expect("valid metric");
        let registry = Registry::new();
        for collector in [
            Box::new(sends.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(token_fetches.clone()),
            Box::new(send_duration.clone()),
            Box::new(queued.clone()),
            Box::new(in_flight.clone()),
        ] {
            registry.register(collector).expect("unique metric names");
        }
        Metrics {
            registry,
            sends,
            token_fetches,
            send_duration,
            queued,
            in_flight,
        }
    }

    /// The registry in the Prometheus text format.
    pub(crate) fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding into a Vec fails only on invalid metrics, which `new` rules out.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}

/// Whether an egress path is an access-token fetch.
pub(crate) fn is_token_fetch(path: &str) -> bool {
    matches!(path, "/cgi-bin/token" | "/cgi-bin/stable_token")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family() {
        let metrics = Metrics::new();
        metrics
            .sends
            .with_label_values(&["shop", "template_message", "delivered"])
            .inc();
        metrics.token_fetches.with_label_values(&["shop"]).inc();
        metrics.queued.with_label_values(&["shop"]).set(3);
        let text = metrics.render();
        assert!(text.contains(
            r#"wxnotify_sends_total{channel="template_message",outcome="delivered",tenant="shop"} 1"#
        ));
        assert!(text.contains(r#"wxnotify_token_fetches_total{tenant="shop"} 1"#));
        assert!(text.contains(r#"wxnotify_outbox_queued{tenant="shop"} 3"#));
        assert!(text.contains("wxnotify_outbox_in_flight 0"));
        assert!(is_token_fetch("/cgi-bin/stable_token"));
        assert!(!is_token_fetch("/cgi-bin/message/template/send"));
    }
}
