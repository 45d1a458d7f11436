use std::io::Write as _;

use crate::util::*;

#[test]
fn publish_with_a_lifetime_reaches_a_late_monitor() {
    let (_hub, address) = hub();
    let mut publisher = Proc::spawn(&[
        "publish",
        "--connect",
        &address,
        "--service",
        "news",
        "--lifetime",
        "60",
        "headline",
        r#"{"text":"rain"}"#,
    ]);
    publisher.wait_stderr("available to late subscribers");

    let output = run(&[
        "monitor",
        "--connect",
        &address,
        "--count",
        "1",
        "news",
        "head*",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let reports = json_lines(&stdout(&output));
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0]["subject"], "headline");
    assert_eq!(reports[0]["pattern"], "head*");
    assert_eq!(reports[0]["value"], serde_json::json!({"text": "rain"}));

    // It stays for the lifetime; a signal ends it early and cleanly.
    publisher.signal("TERM");
    assert_eq!(publisher.wait_exit().code(), Some(0));
    publisher.assert_clean_stderr();
}

#[test]
fn publish_without_a_lifetime_reaches_a_running_monitor_and_exits() {
    let (_hub, address) = hub();
    let mut monitor = Proc::spawn(&["monitor", "--connect", &address, "--count", "1", "alerts"]);
    monitor.wait_stderr("waiting for one");
    let output = run(&[
        "publish",
        "--connect",
        &address,
        "--service",
        "alerts",
        "disk.full",
        "/var",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report = monitor.next_json();
    assert_eq!(report["subject"], "disk.full");
    assert_eq!(report["value"], "/var");
    assert_eq!(monitor.wait_exit().code(), Some(0));
}

#[test]
fn publish_from_stdin_reports_bad_lines_and_carries_on() {
    let (_hub, address) = hub();
    let mut monitor = Proc::spawn(&["monitor", "--connect", &address, "--count", "3", "feed"]);
    monitor.wait_stderr("waiting for one");
    let mut publisher = Proc::spawn(&[
        "publish",
        "--connect",
        &address,
        "--service",
        "feed",
        "--lifetime",
        "forever",
    ]);
    let mut stdin = publisher.stdin.take().expect("stdin");
    stdin
        .write_all(
            b"a.b 1\n\
              # a comment, and a blank line\n\
              \n\
              bad line\n\
              c.d {\"k\":[true]}\n\
              no-json-here\n\
              e.f \"text\"\n",
        )
        .expect("write");
    stdin.flush().expect("flush");

    let mut seen = Vec::new();
    for _ in 0..3 {
        let r = monitor.next_json();
        seen.push((
            r["subject"].as_str().expect("subject").to_owned(),
            r["value"].clone(),
        ));
    }
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        seen,
        [
            ("a.b".to_owned(), serde_json::json!(1)),
            ("c.d".to_owned(), serde_json::json!({"k": [true]})),
            ("e.f".to_owned(), serde_json::json!("text")),
        ]
    );
    // EOF ends it; the bad lines were named and make the exit code 1.
    drop(stdin);
    assert_eq!(publisher.wait_exit().code(), Some(1));
    let errors: Vec<&String> = publisher
        .stderr_seen
        .iter()
        .filter(|l| l.starts_with("error: line"))
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].starts_with("error: line 4: invalid JSON"),
        "{errors:?}"
    );
    assert!(
        errors[1].starts_with("error: line 6: expected `SUBJECT JSON`"),
        "{errors:?}"
    );
    publisher.assert_clean_stderr();
}
