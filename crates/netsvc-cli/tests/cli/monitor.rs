use crate::util::*;

#[test]
fn monitor_prints_the_clock_reports() {
    let (_hub, address) = hub();
    let _demo = demo(&address);
    let output = run(&["monitor", "--connect", &address, "--count", "2", "clock"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let reports = json_lines(&stdout(&output));
    assert_eq!(reports.len(), 2);
    for r in &reports {
        assert_eq!(r["event"], "report");
        assert_eq!(r["service"], "clock");
        assert_eq!(r["subject"], "system.time");
        assert_eq!(r["pattern"], "*");
        assert!(
            r["publisher"]
                .as_str()
                .expect("publisher")
                .ends_with("!clock"),
            "{r}"
        );
        assert!(
            r["value"]["$datetime"]
                .as_str()
                .expect("a date-time")
                .ends_with('Z'),
            "{r}"
        );
    }

    // With --events, publisher notices are JSON lines too; a pattern that matches nothing
    // gives notices only.
    let mut monitor = Proc::spawn(&[
        "monitor",
        "--connect",
        &address,
        "--events",
        "clock",
        "nothing.*",
    ]);
    let notice = monitor.next_json();
    assert_eq!(notice["event"], "publisher-available");
    assert_eq!(notice["service"], "clock");
    assert!(notice["process"].is_string());
}

#[test]
fn monitor_all_follows_every_publisher() {
    let (_hub, address) = hub();
    let _demo = demo(&address);
    let mut all = Proc::spawn(&["monitor", "--connect", &address, "--all"]);
    all.json_until("a clock report", |j| j["service"] == "clock");
    // A publisher that appears later is followed too.
    let mut news = Proc::spawn(&[
        "publish",
        "--connect",
        &address,
        "--service",
        "news",
        "--lifetime",
        "60",
        "headline",
        "\"rain\"",
    ]);
    news.wait_stderr("available to late subscribers");
    let report = all.json_until("the news", |j| j["service"] == "news");
    assert_eq!(report["subject"], "headline");
    assert_eq!(report["value"], "rain");
    assert_eq!(report["pattern"], "*");
    assert!(
        report["publisher"]
            .as_str()
            .expect("publisher")
            .ends_with("!news"),
        "{report}"
    );

    // With a pattern: only the matching subjects, whoever publishes them.
    let output = run(&[
        "monitor",
        "--connect",
        &address,
        "--all",
        "--count",
        "1",
        "head*",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let reports = json_lines(&stdout(&output));
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0]["service"], "news");
    assert_eq!(reports[0]["pattern"], "head*");

    // A service name and --all do not go together; neither does a missing name.
    let output = run(&["monitor", "--connect", &address, "--all", "clock", "*"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let output = run(&["monitor", "--connect", &address]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("--all"), "{}", stderr(&output));
}
