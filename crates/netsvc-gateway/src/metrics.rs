//! A runtime's [`Stats`] in the Prometheus text exposition format (version 0.0.4), as
//! `GET /metrics` serves it. A pure function of one snapshot: every series is read from the
//! same moment.
//!
//! Counters end in `_total`; the request latency is a histogram in seconds with the
//! buckets of [`LATENCY_BOUNDS_US`]. Label sets are bounded because the stats are: services
//! and subjects beyond the runtime's tracked ones are folded into `!other`, a name no service can have.

use std::fmt::Write;

use netsvc::stats::{LATENCY_BOUNDS_US, LinkStats, Stats};

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders `stats` as Prometheus text.
pub fn render(stats: &Stats) -> String {
    let mut out = Metrics::default();
    out.family(
        "netsvc_info",
        "gauge",
        "The process and its netsvc version.",
    );
    out.sample(
        "netsvc_info",
        &[("identity", &stats.identity), ("version", &stats.version)],
        1,
    );
    out.family(
        "netsvc_uptime_seconds",
        "gauge",
        "Seconds since the runtime started.",
    );
    out.sample_f64("netsvc_uptime_seconds", &[], stats.uptime_s);
    out.family(
        "netsvc_services",
        "gauge",
        "Services in the registry, this process's own and learned through links.",
    );
    out.sample(
        "netsvc_services",
        &[("location", "local")],
        stats.services_local,
    );
    out.sample(
        "netsvc_services",
        &[("location", "remote")],
        stats.services_remote,
    );

    out.family(
        "netsvc_requests_total",
        "counter",
        "Requests by service, this process's role and outcome (ok, or the failure code).",
    );
    for r in &stats.requests {
        let role = r.role.as_str();
        let base = [("service", r.service.as_str()), ("role", role)];
        out.sample(
            "netsvc_requests_total",
            &[base[0], base[1], ("outcome", "ok")],
            r.ok,
        );
        for (code, n) in &r.failures {
            let code = code.to_string();
            out.sample(
                "netsvc_requests_total",
                &[base[0], base[1], ("outcome", &code)],
                *n,
            );
        }
    }
    out.family(
        "netsvc_request_duration_seconds",
        "histogram",
        "How long requests took, from the request to its outcome.",
    );
    for r in &stats.requests {
        let labels = [("service", r.service.as_str()), ("role", r.role.as_str())];
        let mut cumulative = 0u64;
        for (i, n) in r.latency.buckets.iter().enumerate() {
            cumulative += n;
            let le = match LATENCY_BOUNDS_US.get(i) {
                Some(&bound) => seconds(bound),
                None => "+Inf".to_owned(),
            };
            out.sample(
                "netsvc_request_duration_seconds_bucket",
                &[labels[0], labels[1], ("le", &le)],
                cumulative,
            );
        }
        out.sample_f64(
            "netsvc_request_duration_seconds_sum",
            &labels,
            r.latency.sum_us as f64 / 1e6,
        );
        out.sample(
            "netsvc_request_duration_seconds_count",
            &labels,
            r.latency.count(),
        );
    }

    let reports = &stats.reports;
    out.family(
        "netsvc_reports_total",
        "counter",
        "Reports by stage: published here, received from links, delivered to monitors here, \
         queued toward links.",
    );
    for (stage, n) in [
        ("published", reports.published),
        ("received", reports.received),
        ("delivered", reports.delivered),
        ("sent", reports.sent),
    ] {
        out.sample("netsvc_reports_total", &[("stage", stage)], n);
    }
    out.counter(
        "netsvc_reports_coalesced_total",
        "Reports replaced in a queue by a newer one of the same publisher and subject.",
        reports.coalesced,
    );
    out.counter(
        "netsvc_reports_missed_total",
        "Reports dropped because a consumer was too far behind.",
        reports.missed,
    );
    out.family(
        "netsvc_subject_reports_total",
        "counter",
        "Reports by publisher and subject (the tracked ones).",
    );
    for s in &stats.subjects {
        out.sample(
            "netsvc_subject_reports_total",
            &[
                ("publisher", &s.publisher),
                ("address", &s.address),
                ("subject", &s.subject),
            ],
            s.reports,
        );
    }
    out.counter(
        "netsvc_subject_reports_overflow_total",
        "Reports on subjects beyond the tracked ones.",
        stats.subjects_overflow,
    );

    out.family("netsvc_links", "gauge", "Links up now.");
    out.sample("netsvc_links", &[], stats.links.len() as u64);
    let per_link: [LinkSeries; 6] = [
        (
            "netsvc_link_bytes_in_total",
            "counter",
            "Bytes read from the link's peer.",
            |l| l.bytes_in,
        ),
        (
            "netsvc_link_bytes_out_total",
            "counter",
            "Bytes written to the link's peer.",
            |l| l.bytes_out,
        ),
        (
            "netsvc_link_frames_in_total",
            "counter",
            "Frames read from the link's peer.",
            |l| l.frames_in,
        ),
        (
            "netsvc_link_queued_bytes",
            "gauge",
            "Bytes queued toward the link's peer, not yet written.",
            |l| l.queued_bytes,
        ),
        (
            "netsvc_link_reports_coalesced_total",
            "counter",
            "Reports coalesced in the link's queue.",
            |l| l.coalesced,
        ),
        (
            "netsvc_link_reports_dropped_total",
            "counter",
            "Reports dropped at the link's hard limit.",
            |l| l.dropped,
        ),
    ];
    for (name, kind, help, read) in per_link {
        out.family(name, kind, help);
        for link in &stats.links {
            let id = link.id.to_string();
            out.sample(
                name,
                &[
                    ("link", &id),
                    ("peer", &link.peer),
                    ("remote", &link.remote),
                ],
                read(link),
            );
        }
    }
    out.counter(
        "netsvc_slow_consumer_closes_total",
        "Links closed because their peer read too slowly.",
        stats.slow_consumer_closes,
    );
    out.text
}

/// A per-link series: name, type, help, and how to read it off a link.
type LinkSeries = (
    &'static str,
    &'static str,
    &'static str,
    fn(&LinkStats) -> u64,
);

/// Microseconds as the decimal seconds of a bucket bound (`0.00005`, `10`).
fn seconds(us: u64) -> String {
    let whole = us / 1_000_000;
    let frac = us % 1_000_000;
    if frac == 0 {
        whole.to_string()
    } else {
        let digits = format!("{frac:06}");
        format!("{whole}.{}", digits.trim_end_matches('0'))
    }
}

#[derive(Default)]
struct Metrics {
    text: String,
}

impl Metrics {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        // Writing to a String cannot fail.
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "counter", help);
        self.sample(name, &[], value);
    }

    fn labels(&mut self, labels: &[(&str, &str)]) {
        if labels.is_empty() {
            return;
        }
        self.text.push('{');
        for (i, (key, value)) in labels.iter().enumerate() {
            if i > 0 {
                self.text.push(',');
            }
            self.text.push_str(key);
            self.text.push_str("=\"");
            for c in value.chars() {
                match c {
                    '\\' => self.text.push_str("\\\\"),
                    '"' => self.text.push_str("\\\""),
                    '\n' => self.text.push_str("\\n"),
                    c => self.text.push(c),
                }
            }
            self.text.push('"');
        }
        self.text.push('}');
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.text.push_str(name);
        self.labels(labels);
        let _ = writeln!(self.text, " {value}");
    }

    fn sample_f64(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        self.labels(labels);
        let _ = writeln!(self.text, " {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_bounds_are_decimal_seconds() {
        assert_eq!(seconds(50), "0.00005");
        assert_eq!(seconds(1_000), "0.001");
        assert_eq!(seconds(2_500_000), "2.5");
        assert_eq!(seconds(10_000_000), "10");
    }

    #[test]
    fn label_values_are_escaped() {
        let mut m = Metrics::default();
        m.sample("x", &[("service", "a\"b\\c\nd")], 1);
        assert_eq!(m.text, "x{service=\"a\\\"b\\\\c\\nd\"} 1\n");
    }
}
