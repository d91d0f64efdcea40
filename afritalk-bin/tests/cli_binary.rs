//! The `afritalk user` subcommands, run as an operator runs them: the real
//! binary on a fresh data directory (the embedded default's SQLite file).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::{Command, Output};

fn afritalk(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_afritalk"))
        .args(args)
        .env("AFRITALK_DATA_DIR", dir.join("data"))
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn stdout_ok(output: &Output) -> String {
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn user_list_shows_the_directory_by_name_and_searches_without_accents() {
    let dir = tempfile::tempdir().unwrap();
    for (user, role, name, extra) in [
        ("awa", "PDG", "Awa Diop", None),
        ("elo", "DG", "Élodie Koné", None),
        ("old", "Employé", "Elodie Bamba", Some("--inactive")),
    ] {
        let mut args = vec!["user", "upsert", "--tenant", "acme", "--user", user];
        args.extend(["--role", role, "--name", name]);
        args.extend(extra);
        stdout_ok(&afritalk(dir.path(), &args));
    }
    let listed = stdout_ok(&afritalk(dir.path(), &["user", "list", "--tenant", "acme"]));
    assert_eq!(
        listed.lines().collect::<Vec<_>>(),
        ["awa\tPDG\tactive\tAwa Diop", "elo\tDG\tactive\tÉlodie Koné"]
    );
    let found = stdout_ok(&afritalk(
        dir.path(),
        &[
            "user",
            "list",
            "--tenant",
            "acme",
            "--search",
            "ELODIE",
            "--include-inactive",
        ],
    ));
    assert_eq!(
        found.lines().collect::<Vec<_>>(),
        [
            "old\tEMPLOYE\tinactive\tElodie Bamba",
            "elo\tDG\tactive\tÉlodie Koné"
        ]
    );
    let none = stdout_ok(&afritalk(
        dir.path(),
        &["user", "list", "--tenant", "globex"],
    ));
    assert_eq!(none.trim(), "no users in globex");
    let long = "x".repeat(101);
    let refused = afritalk(
        dir.path(),
        &["user", "list", "--tenant", "acme", "--search", &long],
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--search"));
}

#[test]
fn public_key_token_ttl_and_purge_bounds_as_an_operator_sees_them() {
    let dir = tempfile::tempdir().unwrap();
    // The public key is that of the pair the token subcommand signs with,
    // the same on every call (created once in the data directory).
    let public = stdout_ok(&afritalk(dir.path(), &["public-key"]));
    assert_eq!(public.trim().len(), 64, "{public}");
    let again = stdout_ok(&afritalk(dir.path(), &["public-key"]));
    assert_eq!(public, again);
    let token = [
        "token", "--tenant", "acme", "--user", "awa", "--role", "PDG",
    ];
    for ttl in ["0", "31536001"] {
        let refused = afritalk(dir.path(), &[&token[..], &["--ttl", ttl]].concat());
        assert!(!refused.status.success(), "--ttl {ttl}");
        assert!(String::from_utf8_lossy(&refused.stderr).contains("--ttl"));
    }
    stdout_ok(&afritalk(
        dir.path(),
        &[&token[..], &["--ttl", "31536000"]].concat(),
    ));
    // A century and more: refused with a sentence, not a panic.
    let refused = afritalk(dir.path(), &["audit", "purge", "--older-than", "100000000"]);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("36,500"));
    // Rows younger than 12 months are kept, whatever the operator asks.
    let purged = stdout_ok(&afritalk(
        dir.path(),
        &["audit", "purge", "--older-than", "30"],
    ));
    assert!(purged.contains("kept 12 months"), "{purged}");
    let purged = stdout_ok(&afritalk(dir.path(), &["audit", "purge"]));
    assert!(purged.starts_with("removed 0 audit rows"), "{purged}");
    assert!(!purged.contains("kept 12 months"), "{purged}");
}
