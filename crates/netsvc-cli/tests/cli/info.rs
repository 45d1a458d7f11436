//! `netsvc info` and `netsvc methods` against a real hub and the real demo services.

use crate::util::*;

#[test]
fn info_tells_the_hubs_links_and_the_requests_it_relayed() {
    let (_hub, address) = hub();
    let _demo = demo(&address);
    let call = run(&["call", "--connect", &address, "echo", "echo", "\"hi\""]);
    assert!(call.status.success(), "{}", stderr(&call));

    let output = run(&["info", "--json", "--connect", &address]);
    assert!(output.status.success(), "{}", stderr(&output));
    let stats = json_lines(&stdout(&output));
    assert_eq!(stats.len(), 1, "{stats:?}");
    let stats = &stats[0];
    assert_eq!(stats["version"], env!("CARGO_PKG_VERSION"));
    // The demo's link and this command's own.
    assert_eq!(stats["links"].as_array().map(Vec::len), Some(2), "{stats}");
    let relayed = requests_in(stats, "echo", "relayed");
    assert_eq!(relayed["ok"], 1);

    let output = run(&["info", "--connect", &address]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.starts_with("hub "), "{text}");
    for header in ["LINK", "PEER", "QUEUED", "SERVICE", "P99"] {
        assert!(text.contains(header), "no {header} in\n{text}");
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("echo") && l.contains("relayed")),
        "{text}"
    );
}

#[test]
fn a_hub_without_introspection_says_so() {
    let (_hub, address) = hub_with(&["--no-introspection"]);
    let output = run(&["info", "--connect", &address]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("--no-introspection"),
        "{}",
        stderr(&output)
    );
    assert_no_panic(&output);
}

#[test]
fn methods_lists_what_a_service_exports_and_services_hides_netsvcs_own() {
    let (_hub, address) = hub();
    let _demo = demo(&address);
    let output = run(&["methods", "--connect", &address, "echo"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "echo\nfail\nsleep\n");
    let output = run(&["methods", "--json", "--connect", &address, "clock"]);
    assert_eq!(stdout(&output).trim(), r#"["now"]"#);
    let output = run(&["methods", "--connect", &address, "nothing"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));

    let listed = services(&address);
    assert!(listed.iter().all(|s| s["name"] != "netsvc.exchange"));
    let output = run(&["services", "--all", "--json", "--connect", &address]);
    let all = json_lines(&stdout(&output));
    assert!(
        all.iter().any(|s| s["name"] == "netsvc.exchange"),
        "{all:?}"
    );
}
