use super::*;

const GOOD: &str = r#"
migration = "shop"

[[rule]]
name = "lag"
when = "lag_bytes > 1MB"
for = "30s"
severity = "critical"
summary = "lag is {value} (over {threshold})"
repeat = "2s"

[[notifier]]
kind = "webhook"
url = "https://hooks.example.com/pgmigrator/s3cret"

[[notifier]]
kind = "command"
command = ["sendmail", "-t"]
"#;

#[test]
fn a_file_with_rules_and_notifiers_loads() {
    let config = AlertsConfig::parse(GOOD, "alerts.toml").unwrap();
    assert_eq!(config.migration, "shop");
    assert_eq!(config.rules.len(), 1);
    let rule = &config.rules[0];
    assert_eq!(rule.hold_for, Duration::from_secs(30));
    assert_eq!(rule.repeat, Duration::from_secs(2));
    assert_eq!(rule.severity, Severity::Critical);
    assert_eq!(
        config.notifiers[1],
        NotifierConfig::Command {
            argv: vec!["sendmail".into(), "-t".into()],
            env: Vec::new(),
        }
    );
    let shown = format!("{:?}", config.notifiers);
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("webhook hooks.example.com"), "{shown}");
}

#[test]
fn notifiers_without_rules_get_the_defaults_and_every_default_parses() {
    let config = AlertsConfig::parse(
        "[[notifier]]\nkind = \"slack\"\nurl = \"https://hooks.slack.com/services/T/B/X\"\n",
        "a.toml",
    )
    .unwrap();
    let names: Vec<&str> = config.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "slot_in_danger",
            "slot_headroom",
            "slot_exhaustion",
            "lag",
            "stalled",
            "errors",
            "cutover_ready",
            "done"
        ]
    );
    assert!(AlertsConfig::parse("", "a.toml").unwrap().rules.is_empty());
}

#[test]
fn each_mistake_is_one_line_naming_its_line() {
    for (text, says) in [
        (
            "[[rule]]\nname = \"x\"\nwhen = \"lag > 1MB\"\n",
            "a.toml:3: unknown quantity \"lag\"",
        ),
        (
            "[[rule]]\nname = \"x\"\n\nwhen = \"lag_bytes > 1XB\"\n",
            "a.toml:4: unknown size unit \"XB\"",
        ),
        (
            "\n[[rule]]\nname = \"x\"\n",
            "a.toml:2: missing field `when`",
        ),
        (
            "[[rule]]\nname = \"x\"\nwhen = \"lag_bytes > 1\"\nfor = \"soon\"\n",
            "a.toml:4: \"soon\" is not a duration",
        ),
        (
            "[[rule]]\nname = \"x\"\nwhen = \"lag_bytes > 1\"\nsevrity = \"info\"\n",
            "a.toml:4: unknown field `sevrity`",
        ),
        (
            "[[rule]]\nname = \"x\"\nwhen = \"lag_bytes > 1\"\nseverity = \"fatal\"\n",
            "a.toml:4: unknown severity \"fatal\"",
        ),
        (
            "[[notifier]]\nkind = \"pager\"\n",
            "a.toml:2: unknown notifier kind \"pager\"",
        ),
        (
            "[[notifier]]\nkind = \"webhook\"\nurl = \"ftp://x\"\n",
            "a.toml:3: a webhook url starts with https:// or http://",
        ),
        (
            "[[notifier]]\nkind = \"command\"\n",
            "a.toml:2: a command notifier needs",
        ),
        ("rule = [", "a.toml:1: "),
    ] {
        let err = AlertsConfig::parse(text, "a.toml").unwrap_err().to_string();
        assert!(err.starts_with(says), "{text:?}: {err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }
}

#[test]
fn hosts_are_shown_without_credentials_or_paths() {
    assert_eq!(
        host_of("https://user:pw@hooks.example.com:8443/x?y"),
        "hooks.example.com:8443"
    );
    assert_eq!(host_of("http://127.0.0.1:9/hook"), "127.0.0.1:9");
}
