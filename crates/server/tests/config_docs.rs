//! docs/configuration.md lists every key with its default: the listing must parse (no
//! unknown key, no bad value) and give exactly the defaults the code has.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use allowgate_server::config::Config;

#[test]
fn the_documented_keys_are_the_keys_and_their_defaults() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/configuration.md"
    ))
    .unwrap();
    let start = doc.find("```toml\n").expect("no ```toml block") + "```toml\n".len();
    let end = start + doc[start..].find("```").expect("unterminated block");
    let listed = Config::from_toml(&doc[start..end]).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(listed, Config::default());
    // Every section of the code is in the listing.
    for section in [
        "[store]",
        "[listen]",
        "[policy]",
        "[policy_server]",
        "[milter]",
        "[history]",
        "[reload]",
        "[log]",
        "[runtime]",
    ] {
        assert!(
            doc[start..end].contains(section),
            "{section} is not documented"
        );
    }
}
