use crate::util::*;

#[test]
fn services_lists_the_demo_as_json_and_columns() {
    let (_hub, address) = hub();
    let _demo = demo(&address);

    let listed = services(&address);
    assert_eq!(listed.len(), 2, "{listed:?}");
    for (service, name) in listed.iter().zip(["clock", "echo"]) {
        let object = service.as_object().expect("an object");
        let keys: Vec<&str> = object.keys().map(String::as_str).collect();
        let mut expected = vec![
            "address", "agent", "audience", "groups", "location", "name", "process",
        ];
        expected.sort_unstable();
        let mut keys = keys;
        keys.sort_unstable();
        assert_eq!(keys, expected, "{service}");
        assert_eq!(service["name"], name);
        assert_eq!(service["audience"], "*");
        assert_eq!(service["groups"], serde_json::json!(["demo"]));
        assert_eq!(service["location"], "remote");
        let agent = service["agent"].as_str().expect("agent");
        let process = service["process"].as_str().expect("process");
        assert!(agent.ends_with(&format!("@{process}")), "{service}");
        assert_eq!(service["address"], format!("{agent}!{name}"));
    }

    let output = run(&["services", "--connect", &address]);
    assert!(output.status.success());
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("NAME"), "{text}");
    for column in [
        "AUDIENCE", "GROUPS", "LOCATION", "AGENT", "PROCESS", "ADDRESS",
    ] {
        let at = lines[0].find(column).expect(column);
        // Aligned: every row has a cell starting in this column.
        for row in &lines[1..] {
            assert_eq!(
                row.as_bytes()[at - 1],
                b' ',
                "column {column} misaligned:\n{text}"
            );
            assert_ne!(
                row.as_bytes()[at],
                b' ',
                "column {column} misaligned:\n{text}"
            );
        }
    }

    // A name filter.
    let output = run(&["services", "--json", "--connect", &address, "echo"]);
    let only = json_lines(&stdout(&output));
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["name"], "echo");
}

#[test]
fn services_watch_sees_the_demo_withdraw_gracefully() {
    let (_hub, address) = hub();
    let mut demo = demo(&address);
    let mut watch = Proc::spawn(&["services", "--watch", "--json", "--connect", &address]);
    let first = watch.next_json();
    let second = watch.next_json();
    let mut names = [first["name"].clone(), second["name"].clone()];
    names.sort_by_key(|n| n.as_str().map(str::to_owned));
    assert_eq!(names, [Json::from("clock"), Json::from("echo")]);
    assert_eq!(first["event"], "present");
    assert_eq!(first["groups"], serde_json::json!(["demo"]));

    // A newcomer is announced as it arrives.
    let mut publisher = Proc::spawn(&[
        "publish",
        "--connect",
        &address,
        "--service",
        "newcomer",
        "--lifetime",
        "forever",
        "s",
        "1",
    ]);
    let arrived = watch.json_until("the newcomer", |j| j["name"] == "newcomer");
    assert_eq!(arrived["event"], "available");
    publisher.wait_stderr("available to late subscribers");
    publisher.signal("INT");
    assert_eq!(publisher.wait_exit().code(), Some(0));
    let left = watch.json_until("the newcomer leaving", |j| j["name"] == "newcomer");
    assert_eq!(left["event"], "withdrawn");

    // A service that arrives with groups is printed with them.
    let mut second = Proc::spawn(&["demo", "--connect", &address]);
    let echo = watch.json_until("a second echo", |j| j["name"] == "echo");
    assert_eq!(echo["event"], "available");
    assert_eq!(echo["groups"], serde_json::json!(["demo"]), "{echo}");
    watch.json_until("a second clock", |j| j["name"] == "clock");
    second.wait_stderr("demo ready");

    demo.signal("TERM");
    second.signal("TERM");
    assert_eq!(demo.wait_exit().code(), Some(0));
    assert_eq!(second.wait_exit().code(), Some(0));
    let mut gone = Vec::new();
    while gone.len() < 4 {
        let j = watch.json_until("a withdrawal", |j| j["event"] == "withdrawn");
        assert_eq!(j["reason"], "process-exit", "{j}");
        gone.push(j["name"].as_str().expect("name").to_owned());
    }
    gone.sort();
    assert_eq!(gone, ["clock", "clock", "echo", "echo"]);

    watch.signal("INT");
    assert_eq!(watch.wait_exit().code(), Some(0));
    watch.assert_clean_stderr();
    demo.assert_clean_stderr();
}

#[test]
fn services_checks_the_name_and_says_when_none_has_it() {
    let (_hub, address) = hub();
    let output = run(&["services", "--connect", &address]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stderr(&output).trim_end(),
        format!("no services visible through {address}")
    );

    let _demo = demo(&address);
    // A name that no service can have is a usage error, as for call, publish and monitor.
    let output = run(&["services", "--connect", &address, "a*b"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).starts_with("error: invalid service name \"a*b\""),
        "{}",
        stderr(&output)
    );
    // Services are visible, only none of that name.
    for json in [false, true] {
        let mut args = vec!["services", "--connect", &address];
        if json {
            args.push("--json");
        }
        args.push("nosuch");
        let output = run(&args);
        assert!(output.status.success(), "{}", stderr(&output));
        assert_eq!(stdout(&output), "");
        assert_eq!(
            stderr(&output).trim_end(),
            format!("no service named \"nosuch\" through {address} (2 others visible)")
        );
    }
}
