//! The results of a run and their Markdown tables, ratios and target checks.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::adapters::System;
use crate::adapters::netsvc::RegistryMode;
use crate::suite::label;
use crate::workloads::{gateway, memory, ose, w1, w2, w4, w5, xhub};

/// Everything one run measured.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Results {
    pub(crate) quick: bool,
    pub(crate) pinned: bool,
    pub(crate) systems: Vec<System>,
    pub(crate) w1: Vec<w1::Run>,
    pub(crate) w2: Vec<w2::Run>,
    pub(crate) w4: Vec<w4::Run>,
    pub(crate) w5: Vec<w5::Run>,
    pub(crate) memory: Vec<memory::Run>,
    /// Absent from the JSON of runs made before the gateway workload existed.
    #[serde(default)]
    pub(crate) gateway: Vec<gateway::Run>,
    /// Absent from the JSON of runs made before the ose workload existed.
    #[serde(default)]
    pub(crate) ose: Vec<ose::Run>,
    /// Absent from the JSON of runs made before the cross-hub workload existed.
    #[serde(default)]
    pub(crate) xhub: Vec<xhub::Run>,
    /// Failures and remarks collected during the run.
    pub(crate) notes: Vec<String>,
    pub(crate) elapsed_secs: f64,
}

/// 1234567.8 → "1,234,568".
fn thousands(v: f64) -> String {
    if !v.is_finite() {
        return "—".to_owned();
    }
    let n = v.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 && a.is_finite() && b.is_finite() => format!("{:.2}x", a / b),
        _ => "n/a".to_owned(),
    }
}

/// The median of `values` (the mean of the middle two for an even count); `None` when empty.
fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    })
}

/// "median [min–max]" (just the value for one), each written by `show`; "n/a" when empty.
fn spread(values: &[f64], show: fn(f64) -> String) -> String {
    let Some(m) = median(values) else {
        return "n/a".to_owned();
    };
    if values.len() == 1 {
        return show(m);
    }
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{} [{}–{}]", show(m), show(lo), show(hi))
}

fn ms(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.0}")
    } else {
        "never".to_owned()
    }
}

fn yes(ok: bool) -> &'static str {
    if ok { "**met**" } else { "**missed**" }
}

/// A target, its figure, and whether it is met (`None`: not measured).
struct Check {
    target: String,
    figure: String,
    met: Option<bool>,
}

impl Results {
    fn w1(&self, system: System, size: usize, subs: usize) -> Option<&w1::Run> {
        self.w1
            .iter()
            .find(|r| r.system == system && r.case.size == size && r.case.subs == subs)
    }

    fn w2(&self, system: System) -> Option<&w2::Run> {
        self.w2.iter().find(|r| r.system == system)
    }

    fn w4(&self, system: System) -> Option<&w4::Run> {
        self.w4.iter().find(|r| r.system == system)
    }

    fn memory(&self, system: System) -> Option<&memory::Run> {
        self.memory.iter().find(|r| r.system == system)
    }

    /// The tables, ratios, target checks and notes, as Markdown.
    pub(crate) fn markdown(&self) -> String {
        let mut md = String::new();
        self.targets_md(&mut md);
        self.w1_md(&mut md);
        self.w2_md(&mut md);
        self.xhub_md(&mut md);
        self.w4_md(&mut md);
        self.w5_md(&mut md);
        self.memory_md(&mut md);
        self.gateway_md(&mut md);
        self.ose_md(&mut md);
        if !self.notes.is_empty() {
            md.push_str("\n### Notes from this run\n\n");
            for n in &self.notes {
                let _ = writeln!(md, "- {n}");
            }
        }
        md
    }

    fn checks(&self) -> Vec<Check> {
        let mut checks = Vec::new();
        let delivered = |s, size, subs| self.w1(s, size, subs).map(|r| r.delivered_per_s);
        for subs in [1, 16] {
            let (n, p) = (
                delivered(System::Netsvc, 16, subs),
                delivered(System::Nats, 16, subs),
            );
            checks.push(Check {
                target: format!("W1 16 B 1:{subs}: netsvc ≥ 1.0x nats-server (stretch 1.5x)"),
                figure: ratio(n, p),
                met: n.zip(p).map(|(n, p)| n >= p),
            });
        }
        let mqtt: Vec<(String, f64)> = self
            .w1
            .iter()
            .filter(|r| r.system == System::Netsvc)
            .filter_map(|n| {
                let m = delivered(System::Mqtt, n.case.size, n.case.subs)?;
                Some((
                    format!("{} B 1:{}", n.case.size, n.case.subs),
                    n.delivered_per_s / m,
                ))
            })
            .collect();
        let worst = mqtt.iter().min_by(|a, b| a.1.total_cmp(&b.1));
        checks.push(Check {
            target: "W1 every case: netsvc ≥ 3x mosquitto".to_owned(),
            figure: worst.map_or("n/a".to_owned(), |(c, r)| format!("lowest {r:.2}x ({c})")),
            met: worst.map(|(_, r)| *r >= 3.0),
        });
        let (n, nats, tcp) = (
            self.w2(System::Netsvc),
            self.w2(System::Nats),
            self.w2(System::Tcp),
        );
        for (what, get) in [
            (
                "p50",
                (|s: &w2::Run| s.sequential.p50_us) as fn(&w2::Run) -> f64,
            ),
            ("p99", |s: &w2::Run| s.sequential.p99_us),
        ] {
            checks.push(Check {
                target: format!("W2 sequential {what}: netsvc ≤ nats-server"),
                figure: match (n, nats) {
                    (Some(n), Some(p)) => format!("{:.1} µs vs {:.1} µs", get(n), get(p)),
                    _ => "n/a".to_owned(),
                },
                met: n.zip(nats).map(|(n, p)| get(n) <= get(p)),
            });
            checks.push(Check {
                target: format!(
                    "W2 sequential {what}: netsvc ≤ 2x raw TCP (same layout, via relay)"
                ),
                figure: match (n, tcp) {
                    (Some(n), Some(t)) => format!("{:.2}x", get(n) / get(t)),
                    _ => "n/a".to_owned(),
                },
                met: n.zip(tcp).map(|(n, t)| get(n) <= 2.0 * get(t)),
            });
        }
        let (n4, m4) = (self.w4(System::Netsvc), self.w4(System::Mqtt));
        checks.push(Check {
            target: "W4 snapshot: netsvc faster than mosquitto retained".to_owned(),
            figure: match (n4, m4) {
                (Some(n), Some(m)) => {
                    format!("{:.3} s vs {:.3} s", n.snapshot_secs, m.snapshot_secs)
                }
                _ => "n/a".to_owned(),
            },
            met: n4.zip(m4).map(|(n, m)| n.snapshot_secs < m.snapshot_secs),
        });
        checks.push(Check {
            target: "W4 netsvc: zero gaps, zero duplicates, live update exactly once".to_owned(),
            figure: n4.map_or("n/a".to_owned(), |n| {
                format!(
                    "gaps {}, dups {}, live copies {}, extra {}",
                    n.gaps, n.duplicates, n.live, n.extra
                )
            }),
            met: n4.map(|n| {
                n.gaps == 0
                    && n.duplicates == 0
                    && n.live == 1
                    && n.extra == 0
                    && n.wrong_values == 0
            }),
        });
        let n5 = self.w5.iter().find(|r| r.system == System::Netsvc);
        let scoped5 = self
            .w5
            .iter()
            .find(|r| r.registry == Some(RegistryMode::Scoped));
        let nats5 = self.w5.iter().find(|r| r.system == System::Nats);
        checks.push(Check {
            target: "W5 netsvc, scoped registry: 100% resynced ≤ 1.0 s, 99% ≤ 0.7 s after the hub is back"
                .to_owned(),
            figure: scoped5.map_or("n/a".to_owned(), |r| {
                format!("99% at {} ms, 100% at {} ms", ms(r.resynced_ms[1]), ms(r.resynced_ms[2]))
            }),
            met: scoped5.map(|r| {
                r.not_resynced == 0 && r.resynced_ms[2] <= 1_000.0 && r.resynced_ms[1] <= 700.0
            }),
        });
        checks.push(Check {
            target: "W5 netsvc, scoped registry: 100% resynced ≤ 2x nats-server's".to_owned(),
            figure: match (scoped5, nats5) {
                (Some(n), Some(p)) => ratio(Some(n.resynced_ms[2]), Some(p.resynced_ms[2])),
                _ => "n/a".to_owned(),
            },
            met: scoped5
                .zip(nats5)
                .map(|(n, p)| n.not_resynced == 0 && n.resynced_ms[2] <= 2.0 * p.resynced_ms[2]),
        });
        checks.push(Check {
            target: "W5 netsvc, whole registry: 100% resynced ≤ 2.0 s after the hub is back"
                .to_owned(),
            figure: n5.map_or("n/a".to_owned(), |r| {
                format!(
                    "100% at {} ms ({:.1}% within 3 s)",
                    ms(r.resynced_ms[2]),
                    r.resynced_within_3s_pct
                )
            }),
            met: n5.map(|r| r.not_resynced == 0 && r.resynced_ms[2] <= 2_000.0),
        });
        checks.push(Check {
            target: "W5 netsvc: no duplicate registrations (hub registry = clients)".to_owned(),
            figure: n5
                .and_then(|r| r.registry_after)
                .map_or("n/a".to_owned(), |g| {
                    format!(
                        "{} services, {} distinct, {} in group",
                        g.services, g.distinct, g.group_members
                    )
                }),
            met: n5.and_then(|r| {
                r.registry_after.map(|g| {
                    g.services == r.clients
                        && g.distinct == r.clients
                        && g.group_members == r.clients
                })
            }),
        });
        let (over_nats, plain) = (
            self.xhub(xhub::Layout::NatsLinked),
            self.xhub(xhub::Layout::NatsCluster),
        );
        checks.push(Check {
            target: "Across hubs through NATS, W2 sequential p50: netsvc ≤ plain NATS across the cluster + 40 µs"
                .to_owned(),
            figure: match (over_nats, plain) {
                (Some(n), Some(p)) => format!(
                    "{:.1} µs vs {:.1} µs (+{:.1})",
                    n.sequential.p50_us,
                    p.sequential.p50_us,
                    n.sequential.p50_us - p.sequential.p50_us
                ),
                _ => "n/a".to_owned(),
            },
            met: over_nats
                .zip(plain)
                .map(|(n, p)| n.sequential.p50_us <= p.sequential.p50_us + 40.0),
        });
        let gw = self.gateway_median(gateway::Kind::GatewayJson1, |r| r.rps);
        if !self.gateway.is_empty() {
            checks.push(Check {
                target: "Gateway JSON-RPC echo, 32 clients: ≥ 20,000 req/s".to_owned(),
                figure: gw.map_or("n/a".to_owned(), |v| {
                    format!("{} req/s (median of rounds)", thousands(v))
                }),
                met: gw.map(|v| v >= 20_000.0),
            });
            let vs = self.gateway_ratios(gateway::Kind::Original);
            checks.push(Check {
                target: "Gateway JSON-RPC echo, 32 clients: ≥ 20x the original OSE gateway"
                    .to_owned(),
                figure: spread(&vs, |v| format!("{v:.1}x")),
                met: median(&vs).map(|v| v >= 20.0),
            });
        }
        let nm = self.memory(System::Netsvc);
        // The larger of RSS and live heap + 16 B per block (see the memory table's notes).
        let figure = |rss: f64, verdict: f64| {
            if verdict > rss {
                format!("{} B (heap; RSS {} B)", thousands(verdict), thousands(rss))
            } else {
                format!("{} B", thousands(verdict))
            }
        };
        checks.push(Check {
            target: "Memory: ≤ 16 KiB hub memory per idle connection".to_owned(),
            figure: nm.map_or("n/a".to_owned(), |m| {
                figure(m.per_connection_b, m.verdict_per_connection_b())
            }),
            met: nm.map(|m| m.verdict_per_connection_b() <= 16.0 * 1024.0),
        });
        let scoped_memory = self
            .memory
            .iter()
            .find(|r| r.registry == Some(RegistryMode::Scoped));
        checks.push(Check {
            target: "Memory: ≤ 600 B hub memory per service, scoped registry".to_owned(),
            figure: scoped_memory.map_or("n/a".to_owned(), |m| {
                figure(m.per_service_b, m.verdict_per_service_b())
            }),
            met: scoped_memory.map(|m| m.verdict_per_service_b() <= 600.0),
        });
        checks.push(Check {
            target: "Memory: ≤ 300 B hub memory per subscription".to_owned(),
            figure: nm.map_or("n/a".to_owned(), |m| {
                figure(m.per_subscription_b, m.verdict_per_subscription_b())
            }),
            met: nm.map(|m| m.verdict_per_subscription_b() <= 300.0),
        });
        checks
    }

    fn targets_md(&self, md: &mut String) {
        md.push_str(
            "\n## Targets (ratios from this run)\n\n| target | figure | verdict |\n|---|---|---|\n",
        );
        for c in self.checks() {
            let verdict = match c.met {
                Some(ok) => yes(ok),
                None => "not measured",
            };
            let _ = writeln!(md, "| {} | {} | {} |", c.target, c.figure, verdict);
        }
    }

    /// The median over rounds of `figure` of one gateway-workload target.
    fn gateway_median(&self, kind: gateway::Kind, figure: fn(&gateway::Run) -> f64) -> Option<f64> {
        let values: Vec<f64> = self
            .gateway
            .iter()
            .filter(|r| r.kind == kind)
            .map(figure)
            .collect();
        median(&values)
    }

    /// netsvc's gateway (JSON-RPC 1.0) req/s over `other`'s, one ratio per round that
    /// measured both.
    fn gateway_ratios(&self, other: gateway::Kind) -> Vec<f64> {
        let of = |round: usize, kind| {
            self.gateway
                .iter()
                .find(|r| r.round == round && r.kind == kind)
                .map(|r| r.rps)
        };
        self.gateway
            .iter()
            .filter(|r| r.kind == gateway::Kind::GatewayJson1)
            .filter_map(|r| Some(r.rps / of(r.round, other)?))
            .collect()
    }

    fn gateway_md(&self, md: &mut String) {
        if self.gateway.is_empty() {
            return;
        }
        let rounds = self.gateway.iter().map(|r| r.round).max().unwrap_or(0);
        let _ = write!(
            md,
            "\n## Gateway: JSON-RPC echo, {} clients\n\n{} keep-alive HTTP/1.1 clients (the original closes every connection, so its clients reconnect for each call, inside the measured round trip), a {}-character string echoed; the same call on the native protocol with {} in flight, through the same hub to the same service process. Median of {rounds} round(s), the spread (min–max) in brackets; latencies in µs.\n\n| target | req/s | p50 | p99 | connections per round |\n|---|---:|---:|---:|---:|\n",
            gateway::CLIENTS,
            gateway::CLIENTS,
            128,
            gateway::CLIENTS,
        );
        for kind in [
            gateway::Kind::GatewayJson1,
            gateway::Kind::GatewayJson2,
            gateway::Kind::Native,
            gateway::Kind::Original,
        ] {
            let runs: Vec<&gateway::Run> = self.gateway.iter().filter(|r| r.kind == kind).collect();
            if runs.is_empty() {
                continue;
            }
            let of = |f: fn(&gateway::Run) -> f64| runs.iter().map(|r| f(r)).collect::<Vec<f64>>();
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                kind.label(),
                spread(&of(|r| r.rps), thousands),
                spread(&of(|r| r.latency.p50_us), |v| format!("{v:.0}")),
                spread(&of(|r| r.latency.p99_us), |v| format!("{v:.0}")),
                spread(&of(|r| r.connects as f64), thousands),
            );
        }
        md.push_str("\nRatios of req/s, each from one round, then their median and spread:\n\n| ratio | per round | median [min–max] |\n|---|---|---:|\n");
        for (what, other) in [
            ("gateway (1.0) / original", gateway::Kind::Original),
            ("gateway (1.0) / native", gateway::Kind::Native),
            ("gateway (1.0) / gateway (2.0)", gateway::Kind::GatewayJson2),
        ] {
            let vs = self.gateway_ratios(other);
            if vs.is_empty() {
                continue;
            }
            let each: Vec<String> = vs.iter().map(|v| format!("{v:.2}x")).collect();
            let _ = writeln!(
                md,
                "| {what} | {} | {} |",
                each.join(", "),
                spread(&vs, |v| format!("{v:.2}x"))
            );
        }
    }

    /// `kind`'s p50 over the original's own (`ose-via-original`) p50, one ratio per round
    /// that measured both.
    fn ose_p50_ratios(&self, kind: ose::Kind) -> Vec<f64> {
        let of = |round: usize, kind| {
            self.ose
                .iter()
                .find(|r| r.round == round && r.kind == kind)
                .map(|r| r.latency.p50_us)
        };
        self.ose
            .iter()
            .filter(|r| r.kind == kind)
            .filter_map(|r| {
                let base = of(r.round, ose::Kind::OseViaOriginal)?;
                (base > 0.0).then(|| r.latency.p50_us / base)
            })
            .collect()
    }

    fn ose_md(&self, md: &mut String) {
        if self.ose.is_empty() {
            return;
        }
        let rounds = self.ose.iter().map(|r| r.round).max().unwrap_or(0);
        let _ = write!(
            md,
            "\n## OSE: sequential echo to an original OSE process\n\nOne call at a time (closed loop) of `echo` with a {}-character string to `ose-echo`, hosted by an original OSE process (`oseprobe -connect`), after a warm-up; each target in its own fresh processes, hub on CPU 0, service and caller on CPU 1. The netsvc hub is the real `netsvc exchange --listen A --ose-listen O`; the OSE-protocol caller is a thin client on `netsvc_ose`'s frames (handshake, then one `$S::REQUEST` at a time). Median of {rounds} round(s), the spread (min–max) in brackets; latencies in µs.\n\n| target | calls/s | p50 | p90 | p99 |\n|---|---:|---:|---:|---:|\n",
            gateway::TEXT_LEN,
        );
        for kind in ose::Kind::ALL {
            let runs: Vec<&ose::Run> = self.ose.iter().filter(|r| r.kind == kind).collect();
            if runs.is_empty() {
                continue;
            }
            let of = |f: fn(&ose::Run) -> f64| runs.iter().map(|r| f(r)).collect::<Vec<f64>>();
            let us = |v: f64| format!("{v:.1}");
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                kind.label(),
                spread(&of(|r| r.rps), thousands),
                spread(&of(|r| r.latency.p50_us), us),
                spread(&of(|r| r.latency.p90_us), us),
                spread(&of(|r| r.latency.p99_us), us),
            );
        }
        md.push_str("\nRatios of p50 against the original's own round trip (`ose-via-original`), each from one round, then their median and spread; < 1 favours netsvc:\n\n| ratio | per round | median [min–max] |\n|---|---|---:|\n");
        for (what, kind) in [
            (
                "`netsvc-to-ose` / `ose-via-original`",
                ose::Kind::NetsvcToOse,
            ),
            (
                "`ose-via-netsvc` / `ose-via-original`",
                ose::Kind::OseViaNetsvc,
            ),
        ] {
            let vs = self.ose_p50_ratios(kind);
            if vs.is_empty() {
                continue;
            }
            let each: Vec<String> = vs.iter().map(|v| format!("{v:.2}x")).collect();
            let _ = writeln!(
                md,
                "| {what} | {} | {} |",
                each.join(", "),
                spread(&vs, |v| format!("{v:.2}x"))
            );
        }
    }

    fn w1_md(&self, md: &mut String) {
        if self.w1.is_empty() {
            return;
        }
        let systems: Vec<System> = self
            .systems
            .iter()
            .copied()
            .filter(|s| self.w1.iter().any(|r| r.system == *s))
            .collect();
        md.push_str("\n## W1 throughput: delivered messages per second (sum over subscribers)\n\n");
        md.push_str("1 publisher → K subscribers on one subject, fire and forget (netsvc: `publish_paced`; NATS and MQTT QoS 0 have no publisher flow control beyond TCP). Ratios > 1 favour netsvc.\n\n| payload | subscribers |");
        for s in &systems {
            let _ = write!(md, " {} |", s.label());
        }
        let peers: Vec<System> = systems
            .iter()
            .copied()
            .filter(|s| *s != System::Netsvc)
            .collect();
        for p in &peers {
            let _ = write!(md, " netsvc / {} |", p.label());
        }
        md.push_str("\n|---|---|");
        md.push_str(&"---:|".repeat(systems.len() + peers.len()));
        md.push('\n');
        let mut cases: Vec<w1::Case> = Vec::new();
        for r in &self.w1 {
            if !cases
                .iter()
                .any(|c| c.size == r.case.size && c.subs == r.case.subs)
            {
                cases.push(r.case);
            }
        }
        for c in &cases {
            let _ = write!(md, "| {} B | {} |", c.size, c.subs);
            for s in &systems {
                let v = self.w1(*s, c.size, c.subs).map(|r| r.delivered_per_s);
                let _ = write!(md, " {} |", v.map_or("—".to_owned(), thousands));
            }
            let n = self
                .w1(System::Netsvc, c.size, c.subs)
                .map(|r| r.delivered_per_s);
            for p in &peers {
                let _ = write!(
                    md,
                    " {} |",
                    ratio(n, self.w1(*p, c.size, c.subs).map(|r| r.delivered_per_s))
                );
            }
            md.push('\n');
        }
        md.push_str("\nDetails (lost = sent × subscribers − delivered; coalesced = netsvc `Missed`):\n\n| system | payload | subs | sent | published msg/s | delivered msg/s | slowest subscriber msg/s | lost | duplicates | coalesced | window s |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for r in &self.w1 {
            let _ = writeln!(
                md,
                "| {} | {} B | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} |",
                r.system.label(),
                r.case.size,
                r.case.subs,
                thousands(r.sent as f64),
                thousands(r.published_per_s),
                thousands(r.delivered_per_s),
                thousands(r.slowest_sub_per_s),
                thousands(r.lost as f64),
                r.duplicates,
                r.missed,
                r.window_secs
            );
        }
    }

    fn w2_md(&self, md: &mut String) {
        if self.w2.is_empty() {
            return;
        }
        let _ = write!(
            md,
            "\n## W2 request/reply: {} B each way\n\nSequential (closed loop) round trips in µs, then {} calls in flight. For latency a ratio < 1 favours netsvc; for req/s > 1 does.\n\n| system | calls | p50 | p90 | p99 | p99.9 | max | {} in flight req/s | in flight p50 | in flight p99 |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
            w2::SIZE,
            w2::IN_FLIGHT,
            w2::IN_FLIGHT
        );
        for r in &self.w2 {
            let s = &r.sequential;
            let _ = writeln!(
                md,
                "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {:.1} | {:.1} |",
                r.system.label(),
                thousands(s.count as f64),
                s.p50_us,
                s.p90_us,
                s.p99_us,
                s.p999_us,
                s.max_us,
                thousands(r.in_flight_rps),
                r.in_flight.p50_us,
                r.in_flight.p99_us
            );
        }
        if let Some(n) = self.w2(System::Netsvc) {
            for p in self.w2.iter().filter(|r| r.system != System::Netsvc) {
                let q = |a: f64, b: f64| ratio(Some(a), Some(b));
                let _ = writeln!(
                    md,
                    "| netsvc / {} | | {} | {} | {} | {} | {} | {} | {} | {} |",
                    p.system.label(),
                    q(n.sequential.p50_us, p.sequential.p50_us),
                    q(n.sequential.p90_us, p.sequential.p90_us),
                    q(n.sequential.p99_us, p.sequential.p99_us),
                    q(n.sequential.p999_us, p.sequential.p999_us),
                    q(n.sequential.max_us, p.sequential.max_us),
                    q(n.in_flight_rps, p.in_flight_rps),
                    q(n.in_flight.p50_us, p.in_flight.p50_us),
                    q(n.in_flight.p99_us, p.in_flight.p99_us)
                );
            }
        }
    }

    fn xhub(&self, layout: xhub::Layout) -> Option<&w2::Run> {
        self.xhub.iter().find(|r| r.layout == layout).map(|r| &r.w2)
    }

    fn xhub_md(&self, md: &mut String) {
        if self.xhub.is_empty() {
            return;
        }
        let _ = write!(
            md,
            "\n## Across hubs: W2 with caller and service on two hubs\n\nW2's {} B echo with the caller connected to one hub and the service to another (docs/SCALING.md, *Hubs on a NATS cluster*): netsvc hubs linked over TCP, netsvc hubs each on a node of a two-node NATS cluster (no TCP between them), and plain NATS clients on the two nodes of the same kind of cluster. Round trips in µs; the single-hub W2 above is the reference.\n\n| layout | calls | p50 | p90 | p99 | p99.9 | {} in flight req/s | in flight p50 | in flight p99 |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
            w2::SIZE,
            w2::IN_FLIGHT
        );
        let single = self.w2(System::Netsvc);
        let rows = single
            .map(|r| ("netsvc, one hub (W2)", r))
            .into_iter()
            .chain(self.xhub.iter().map(|r| (r.layout.label(), &r.w2)));
        for (label, r) in rows {
            let s = &r.sequential;
            let _ = writeln!(
                md,
                "| {label} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {:.1} | {:.1} |",
                thousands(s.count as f64),
                s.p50_us,
                s.p90_us,
                s.p99_us,
                s.p999_us,
                thousands(r.in_flight_rps),
                r.in_flight.p50_us,
                r.in_flight.p99_us
            );
        }
    }

    fn w4_md(&self, md: &mut String) {
        if self.w4.is_empty() {
            return;
        }
        md.push_str("\n## W4 late join: snapshot of cached values, then one live update\n\nnetsvc `Lifetime::Forever` + `*`; mosquitto retained + `#` (QoS 0); NATS JetStream KV (history 1) + `watch_with_history(\">\")`. Snapshot time runs from the subscribe call to the last value. The live update (version 2 of `s.0`) is published after the snapshot is complete and must arrive exactly once.\n\n| system | subjects | load s | snapshot s | subjects/s | gaps | duplicates | wrong values | live copies | other after snapshot | live latency µs |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for r in &self.w4 {
            let _ = writeln!(
                md,
                "| {} | {} | {:.3} | {:.3} | {} | {} | {} | {} | {} | {} | {:.0} |",
                r.system.label(),
                thousands(r.subjects as f64),
                r.load_secs,
                r.snapshot_secs,
                thousands(r.distinct as f64 / r.snapshot_secs.max(1e-9)),
                r.gaps,
                r.duplicates,
                r.wrong_values,
                r.live,
                r.extra,
                r.live_latency_us
            );
        }
        if let Some(n) = self.w4(System::Netsvc) {
            for p in self.w4.iter().filter(|r| r.system != System::Netsvc) {
                let _ = writeln!(
                    md,
                    "| netsvc / {} (time, < 1 favours netsvc) | | {} | {} | | | | | | | |",
                    p.system.label(),
                    ratio(Some(n.load_secs), Some(p.load_secs)),
                    ratio(Some(n.snapshot_secs), Some(p.snapshot_secs))
                );
            }
        }
    }

    fn w5_md(&self, md: &mut String) {
        if self.w5.is_empty() {
            return;
        }
        md.push_str("\n## W5 reconnect storm: hub SIGKILLed, restarted on the same port after 1 s\n\nTimes in ms from the hub accepting connections again. netsvc resynced = `Resynced` event and the version cached during the outage received on all 5 subscriptions; NATS resynced = a message published after the kill received on all 5 subscriptions (core NATS caches nothing). Lost: netsvc, cached versions never delivered; NATS, outage messages missing from the sequence.\n\nnetsvc runs with each client's registry whole (told of every service, the default) and scoped (`RegistrySync::Scoped`: told of the names it uses). Hub bytes out: what the hub sent on each link after its restart, on average (the registry sync and the cached reports).\n\n| system | clients | set up before the kill | outage ms | reconnected p50 / p99 / 100% | resynced p50 / p99 / 100% | resynced ≤ 3 s | not resynced | duplicates | lost | hub registry before → after | hub bytes out per client |\n|---|---:|---:|---:|---|---|---:|---:|---:|---:|---|---:|\n");
        for r in &self.w5 {
            let reg = match (r.registry_before, r.registry_after) {
                (Some(b), Some(a)) => format!(
                    "{} ({} distinct, {} in group) → {} ({} distinct, {} in group)",
                    b.services,
                    b.distinct,
                    b.group_members,
                    a.services,
                    a.distinct,
                    a.group_members
                ),
                _ => "n/a (no registry)".to_owned(),
            };
            let three = |v: [f64; 3]| format!("{} / {} / {}", ms(v[0]), ms(v[1]), ms(v[2]));
            let bytes_out = r
                .registry_after
                .map_or("n/a".to_owned(), |a| thousands(a.bytes_out_per_link as f64));
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.0} | {} | {} | {:.1}% | {} | {} | {} | {} | {} |",
                label(r.system, r.registry.unwrap_or_default()),
                r.clients,
                r.set_up,
                r.outage_ms,
                three(r.reconnected_ms),
                three(r.resynced_ms),
                r.resynced_within_3s_pct,
                r.not_resynced,
                r.duplicates,
                r.lost,
                reg,
                bytes_out
            );
        }
        let p = self.w5.iter().find(|r| r.system == System::Nats);
        for n in self.w5.iter().filter(|r| r.system == System::Netsvc) {
            let Some(p) = p else { break };
            let _ = writeln!(
                md,
                "| {} / nats-server (time, < 1 favours netsvc) | | | | {} / {} / {} | {} / {} / {} | | | | | | |",
                label(n.system, n.registry.unwrap_or_default()),
                ratio(Some(n.reconnected_ms[0]), Some(p.reconnected_ms[0])),
                ratio(Some(n.reconnected_ms[1]), Some(p.reconnected_ms[1])),
                ratio(Some(n.reconnected_ms[2]), Some(p.reconnected_ms[2])),
                ratio(Some(n.resynced_ms[0]), Some(p.resynced_ms[0])),
                ratio(Some(n.resynced_ms[1]), Some(p.resynced_ms[1])),
                ratio(Some(n.resynced_ms[2]), Some(p.resynced_ms[2]))
            );
        }
    }

    fn memory_md(&self, md: &mut String) {
        if self.memory.is_empty() {
            return;
        }
        let _ = write!(
            md,
            "\n## Hub memory (VmRSS)\n\nRSS with no clients, then with idle connections, then (netsvc only) with one subscriber service per connection, then with {} subscriptions per connection on distinct subjects. With the whole registry netsvc announces every service to every connected process, so the per-service figure includes that replication (it grows with the number of connections); with a scoped registry each client is told only of the names it uses (here the publisher), so a service costs the hub its own entry. For bytes a ratio < 1 favours netsvc.\n\n| system | connections | subscriptions | RSS empty KiB | RSS idle KiB | RSS with services KiB | RSS subscribed KiB | B per idle connection | B per service | B per subscription |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
            memory::SUBS_PER_CONNECTION
        );
        for r in &self.memory {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                label(r.system, r.registry.unwrap_or_default()),
                thousands(r.connections as f64),
                thousands(r.subscriptions as f64),
                thousands(r.rss0_kib as f64),
                thousands(r.rss1_kib as f64),
                thousands(r.rss_services_kib as f64),
                thousands(r.rss2_kib as f64),
                thousands(r.per_connection_b),
                thousands(r.per_service_b),
                thousands(r.per_subscription_b)
            );
        }
        if let Some(n) = self.memory(System::Netsvc) {
            for p in self.memory.iter().filter(|r| r.system != System::Netsvc) {
                let _ = writeln!(
                    md,
                    "| netsvc / {} | | | | | | | {} | | {} |",
                    p.system.label(),
                    ratio(Some(n.per_connection_b), Some(p.per_connection_b)),
                    ratio(Some(n.per_subscription_b), Some(p.per_subscription_b))
                );
            }
        }
        self.heap_md(md);
    }

    /// netsvc's live heap per phase, next to its RSS.
    fn heap_md(&self, md: &mut String) {
        let Some(n) = self.memory(System::Netsvc) else {
            return;
        };
        let Some(heap) = n.heap else {
            return;
        };
        let _ = write!(
            md,
            "\n### netsvc hub: live heap\n\nThe memory hub (`netsvc-memhub`, the same hub with a counting allocator) reports its live heap after each phase: bytes requested and not freed, and live blocks. \"+ overhead\" adds {} B per block for what glibc malloc adds to each (a size header and rounding). RSS can grow less than the heap when a phase reuses memory an earlier one freed (creating every service at once flooded every link with SERVICE frames whose buffers were then freed, and the subscriptions' RSS then hardly moved; the clients now pace services and subscriptions, which avoids most of it). The verdicts above take the larger of the RSS figure and the heap figure with overhead. The heap includes the links' buffers: a link keeps the frame queue and write buffers its largest recent batch needed, so a phase that sends a batch of frames per link is charged for that too.\n\n| phase | live heap KiB | live blocks | per | heap B | heap + overhead B | RSS B |\n|---|---:|---:|---|---:|---:|---:|\n",
            memory::BLOCK_OVERHEAD
        );
        let rss = [n.rss0_kib, n.rss1_kib, n.rss_services_kib, n.rss2_kib];
        let phases = [
            ("empty", "", 1),
            ("idle connections", "connection", n.connections),
            ("subscriber services", "service", n.connections),
            ("subscriptions", "subscription", n.subscriptions),
        ];
        for (i, (phase, per, count)) in phases.into_iter().enumerate() {
            let (delta, rss_delta) = match i.checked_sub(1) {
                Some(prev) => (
                    n.heap_per(prev, i, count),
                    Some((rss[i] as f64 - rss[prev] as f64) * 1024.0 / count as f64),
                ),
                None => (None, None),
            };
            let _ = writeln!(
                md,
                "| {phase} | {} | {} | {per} | {} | {} | {} |",
                thousands(heap[i].bytes as f64 / 1024.0),
                thousands(heap[i].blocks as f64),
                delta.map_or(String::new(), |d| thousands(d.bytes)),
                delta.map_or(String::new(), |d| thousands(d.with_overhead)),
                rss_delta.map_or(String::new(), thousands),
            );
        }
    }
}

/// The W1 and W2 figures of a plain run and a TLS run, per system: what TLS costs each, and
/// how the two systems compare with TLS on.
pub(crate) fn tls_cost(plain: &Results, tls: &Results) -> String {
    let mut out = String::new();
    let systems = [System::Netsvc, System::Nats];
    let w1 = |r: &Results, s: System, size: usize, subs: usize| {
        r.w1.iter()
            .find(|x| x.system == s && x.case.size == size && x.case.subs == subs)
            .map(|x| x.delivered_per_s)
    };
    let _ = writeln!(
        out,
        "| W1 case | netsvc plain | netsvc TLS | TLS/plain | nats-server plain | nats-server TLS | TLS/plain | netsvc/nats-server with TLS |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut cases: Vec<(usize, usize)> =
        tls.w1.iter().map(|x| (x.case.size, x.case.subs)).collect();
    cases.sort_unstable();
    cases.dedup();
    for (size, subs) in cases {
        let mut row = format!("| {size} B 1:{subs} |");
        for s in systems {
            let (p, t) = (w1(plain, s, size, subs), w1(tls, s, size, subs));
            let show = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), thousands);
            let _ = write!(row, " {} | {} | {} |", show(p), show(t), ratio(t, p));
        }
        let _ = write!(
            row,
            " {} |",
            ratio(
                w1(tls, System::Netsvc, size, subs),
                w1(tls, System::Nats, size, subs)
            )
        );
        let _ = writeln!(out, "{row}");
    }
    let w2 = |r: &Results, s: System| r.w2.iter().find(|x| x.system == s).cloned();
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| W2 | plain p50 µs | TLS p50 µs | TLS − plain p50 µs | plain p99 µs | TLS p99 µs | plain req/s (32 in flight) | TLS req/s | TLS/plain req/s |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for s in systems {
        let (Some(p), Some(t)) = (w2(plain, s), w2(tls, s)) else {
            continue;
        };
        let _ = writeln!(
            out,
            "| {} | {:.1} | {:.1} | {:+.1} | {:.1} | {:.1} | {} | {} | {} |",
            s.label(),
            p.sequential.p50_us,
            t.sequential.p50_us,
            t.sequential.p50_us - p.sequential.p50_us,
            p.sequential.p99_us,
            t.sequential.p99_us,
            thousands(p.in_flight_rps),
            thousands(t.in_flight_rps),
            ratio(Some(t.in_flight_rps), Some(p.in_flight_rps)),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(thousands(1_234_567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(-1234.0), "-1,234");
        assert_eq!(ratio(Some(3.0), Some(2.0)), "1.50x");
        assert_eq!(ratio(Some(3.0), None), "n/a");
        assert_eq!(ms(f64::INFINITY), "never");
    }

    #[test]
    fn medians_and_spreads() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        let show = |v: f64| format!("{v:.0}");
        assert_eq!(spread(&[5.0], show), "5");
        assert_eq!(spread(&[5.0, 9.0, 1.0], show), "5 [1–9]");
        assert_eq!(spread(&[], show), "n/a");
    }

    fn gateway_run(round: usize, kind: gateway::Kind, rps: f64) -> gateway::Run {
        gateway::Run {
            round,
            kind,
            rps,
            latency: crate::stats::Summary::default(),
            connects: 32,
        }
    }

    #[test]
    fn gateway_ratios_pair_runs_of_the_same_round() {
        use gateway::Kind::{GatewayJson1, Original};
        let results = Results {
            gateway: vec![
                gateway_run(1, GatewayJson1, 50_000.0),
                gateway_run(1, Original, 5_000.0),
                gateway_run(2, GatewayJson1, 40_000.0),
                gateway_run(2, Original, 1_000.0),
                // A round without the original gives no ratio.
                gateway_run(3, GatewayJson1, 45_000.0),
            ],
            ..Results::default()
        };
        assert_eq!(results.gateway_ratios(Original), [10.0, 40.0]);
        let md = results.markdown();
        assert!(
            md.contains("| 10.00x, 40.00x | 25.00x [10.00x–40.00x] |"),
            "{md}"
        );
        assert!(
            md.contains("≥ 20,000 req/s | 45,000 req/s (median of rounds) | **met** |"),
            "{md}"
        );
        assert!(
            md.contains("20x the original OSE gateway | 25.0x [10.0x–40.0x] | **met** |"),
            "{md}"
        );
    }

    fn ose_run(round: usize, kind: ose::Kind, p50_us: f64) -> ose::Run {
        ose::Run {
            round,
            kind,
            rps: 1e6 / p50_us,
            latency: crate::stats::Summary {
                p50_us,
                ..Default::default()
            },
        }
    }

    #[test]
    fn ose_ratios_pair_runs_of_the_same_round() {
        use ose::Kind::{NetsvcToOse, OseViaNetsvc, OseViaOriginal};
        let results = Results {
            ose: vec![
                ose_run(1, NetsvcToOse, 50.0),
                ose_run(1, OseViaNetsvc, 40.0),
                ose_run(1, OseViaOriginal, 100.0),
                ose_run(2, NetsvcToOse, 60.0),
                ose_run(2, OseViaOriginal, 200.0),
                // No original in round 3: no ratio.
                ose_run(3, NetsvcToOse, 10.0),
            ],
            ..Results::default()
        };
        assert_eq!(results.ose_p50_ratios(NetsvcToOse), [0.5, 0.3]);
        assert_eq!(results.ose_p50_ratios(OseViaNetsvc), [0.4]);
        let md = results.markdown();
        assert!(
            md.contains("| 0.50x, 0.30x | 0.40x [0.30x–0.50x] |"),
            "{md}"
        );
        assert!(md.contains("| 0.40x | 0.40x |"), "{md}");
    }

    #[test]
    fn empty_results_render() {
        let md = Results::default().markdown();
        assert!(md.contains("not measured"));
    }
}
